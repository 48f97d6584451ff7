"""The Ray cluster as the rest of mlsys uses it, one concern a module: `connection` (join the
configured cluster or start a local one), `console` (what Ray prints on our terminal),
`credentials` (secrets no Ray process inherits), `tasks` (CPU-bound tasks and parquet reads sized
to the cluster) and `actors` (named, detached actors, one per storage root)."""
