from app.serving.feature_cache import OnlineFeatureCache

NAMES = ["age", "country"]


class Store:
    """A fake online store that counts which entities it was asked for."""

    def __init__(self):
        self.values = {1: (30.0, "US"), 2: (40.0, "DE")}
        self.asked: list[list] = []

    def read(self, ids):
        self.asked.append(list(ids))
        rows = [self.values.get(e, (None, None)) for e in ids]
        return {n: [r[j] for r in rows] for j, n in enumerate(NAMES)}


def make(store, clock, **kw):
    return OnlineFeatureCache(
        store.read, NAMES, clock=lambda: clock[0], **{"ttl_s": 5, "max_entries": 10, **kw}
    )


def test_a_hit_answers_what_the_store_answered_without_asking_it_again():
    store, clock = Store(), [0.0]
    cache = make(store, clock)
    first = cache.columns([1, 2, 99])
    assert first == {"age": [30.0, 40.0, None], "country": ["US", "DE", None]}
    assert cache.columns([2, 1, 99, 1]) == {
        "age": [40.0, 30.0, None, 30.0],
        "country": ["DE", "US", None, "US"],
    }
    assert store.asked == [[1, 2, 99]], "an unknown entity is remembered too"


def test_rows_expire_after_the_ttl_and_clear_drops_them_all():
    store, clock = Store(), [0.0]
    cache = make(store, clock)
    cache.columns([1])
    store.values[1] = (31.0, "US")
    clock[0] = 4.9
    assert cache.columns([1])["age"] == [30.0]
    clock[0] = 5.0
    assert cache.columns([1])["age"] == [31.0], "past the TTL the store is read again"
    store.values[1] = (32.0, "US")
    cache.clear()
    assert cache.columns([1])["age"] == [32.0]
    assert store.asked == [[1], [1], [1]]


def test_the_cache_is_bounded_and_evicts_the_least_recently_used():
    store, clock = Store(), [0.0]
    cache = make(store, clock, max_entries=2)
    cache.columns([1])
    cache.columns([2])
    cache.columns([1])  # 1 is now the most recently used
    cache.columns([3])
    assert list(cache.rows) == [1, 3]
    cache.columns([2])
    assert store.asked[-1] == [2]


def test_a_zero_ttl_reads_the_store_every_time():
    store, clock = Store(), [0.0]
    cache = make(store, clock, ttl_s=0)
    cache.columns([1])
    cache.columns([1])
    assert store.asked == [[1], [1]] and not cache.rows
