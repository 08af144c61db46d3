"""A terminal progress bar for builds (tqdm), fed by the writer's progress callback."""
from __future__ import annotations


class BuildProgress:
    """Called as progress(sheet_name, done) by write_book; shows the sheet being written."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="B", unit_scale=True, desc="writing", leave=False)
        self.sheet = None

    def __call__(self, sheet: str, n: int) -> None:
        if sheet != self.sheet:
            self.sheet = sheet
            self.bar.set_description(sheet)
        self.bar.update(n)
