"""What a run archived, for people: the markdown and tables that show it (`render`, `existing`,
`catalog`). Prefect-free and rendering only: the thumbnails they embed are made by
`archiver.previews` (the pipeline makes them while the staged files exist), and
`tasks/artifacts.py` publishes the result. Import the submodules, not this package.
"""
