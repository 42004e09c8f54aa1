"""Validation and cleaning of candle series: every defect is counted and reported, nothing is silent.

`check` only looks; `clean` returns the repaired series together with the report of what it found:
rows sorted, duplicate open times kept once (the last one), impossible rows dropped (a NaN or infinite
value, a price <= 0, a volume < 0), high/low widened where they do not contain open and close, gaps
counted (and forward-filled with zero volume only when asked), spikes and zero-volume bars flagged but kept.

Some findings change results and cannot be repaired without a decision: impossible rows (dropping them is
a policy the user states, `--drop-bad-rows`), and open times that do not fit the timeframe (not on its
grid, less than one bar apart, or in mixed units): `CheckReport.refusal` says why such a series must not
be used, and the loader refuses it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from runtime.data.candles import Candles

# A spike is a return at least this many local robust standard deviations away, undone by the next one.
SPIKE_SIGMAS = 10.0
# Number of returns per block over which the local volatility scale of spike detection is measured.
_SCALE_BLOCK = 256
# Normal-consistency factor of the median absolute deviation.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class CheckReport:
    """What validation found in one series (counts refer to the series as given)."""

    symbol: str  # market symbol
    timeframe: str  # bar length
    rows: int  # rows as given
    start: int | None  # first open time after sorting, UTC ms (None when empty)
    end: int | None  # last open time after sorting, UTC ms
    unsorted: int  # rows whose open time is not after the previous row's
    duplicates: int  # rows sharing an open time with an earlier row (all but one dropped)
    misaligned: int  # open times that are not a multiple of the bar length
    gaps: int  # runs of missing bars between consecutive distinct open times
    missing_bars: int  # bars missing in all gaps together
    longest_gap_bars: int  # bars missing in the longest gap
    crowded: int  # rows less than one bar length after the previous one (the file is of a finer timeframe)
    mixed_units: int  # rows whose open time is in another unit (s, ms, µs) than most rows
    ohlc_errors: int  # rows whose high is below open/close or low above them
    nonfinite: int  # rows with a NaN or infinite price or volume (a short row reads as NaN; dropped)
    nonpositive: int  # rows with finite values and a price <= 0 (dropped)
    negative_volume: int  # rows with finite values, positive prices and a volume < 0 (dropped)
    zero_volume: int  # rows with volume == 0 (kept)
    spikes: int  # isolated log-return outliers (kept, flagged)
    spike_times: tuple[int, ...]  # open times of the spike bars, UTC ms
    filled: int  # bars invented by --fill-gaps (0 unless asked)
    synthetic: bool  # the series came from the synthetic generator

    @property
    def ok(self) -> bool:
        """True when nothing needed repairing (gaps, spikes and zero volume are facts, not errors)."""
        return not (
            self.unsorted
            or self.duplicates
            or self.ohlc_errors
            or self.bad_rows
            or self.refusal(drop_bad_rows=True)
        )

    @property
    def bad_rows(self) -> int:
        """Rows dropped as impossible: a non-finite value, a price <= 0 or a volume < 0."""
        return self.nonfinite + self.nonpositive + self.negative_volume

    def refusal(self, *, drop_bad_rows: bool) -> str | None:
        """Why the series must not be used as it is, or None (`drop_bad_rows`: impossible rows may go).

        Open times that do not fit the timeframe are always refused: the file is of another timeframe or
        its times are written wrongly, and no repair would give the bars it meant.
        """
        times = (
            (self.mixed_units, "open times in another unit (s, ms, µs) than the rest of the file"),
            (self.crowded, f"open times less than one {self.timeframe} bar after the previous one"),
            (self.misaligned, f"open times off the {self.timeframe} grid"),
        )
        found = [f"{count} {what}" for count, what in times if count]
        if found:
            return "; ".join(found) + f": is this {self.timeframe} data? (strat data check shows more)"
        if self.bad_rows and not drop_bad_rows:
            return (
                f"{self.bad_rows} rows with impossible values ({bad_values_text(self)}): "
                "fix the file, or pass --drop-bad-rows to drop them"
            )
        return None

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready mapping (spike times as a list)."""
        data = asdict(self)
        data["spike_times"] = list(self.spike_times)
        return data


def check(candles: Candles) -> CheckReport:
    """Validate a series without changing it."""
    return clean(candles)[1]


def bad_values_text(report: CheckReport) -> str:
    """The impossible rows of a report by kind, e.g. `3 NaN or infinite, 1 negative volume`."""
    kinds = (
        (report.nonfinite, "NaN or infinite"),
        (report.nonpositive, "price <= 0"),
        (report.negative_volume, "negative volume"),
    )
    return ", ".join(f"{count} {what}" for count, what in kinds if count)


def clean(candles: Candles, *, fill_gaps: bool = False) -> tuple[Candles, CheckReport]:
    """Return the repaired series and the report of what was found (see the module docstring)."""
    from runtime.data.fastclean import bad_rows, scan

    step = candles.timeframe_ms
    # One compiled pass counts everything; rows are only reordered or dropped when it found a reason.
    first = scan(candles.time, _prices(candles), candles.filled, step)
    series, duplicates, counts = candles, 0, first
    bad = first.nonfinite + first.nonpositive + first.negative_volume
    if first.unsorted or bad:
        # Sort stably, then keep the last row of each open time (a later row is the corrected one).
        ordered = candles.take(np.argsort(candles.time, kind="stable")) if first.unsorted else candles
        keep_last = np.ones(len(ordered), dtype=bool)
        keep_last[:-1] = ordered.time[1:] != ordered.time[:-1]
        duplicates = int(len(ordered) - np.count_nonzero(keep_last))
        series = ordered.take(keep_last) if duplicates else ordered
        # Impossible rows cannot be traded or logged: drop them (the loader refuses them unless asked).
        impossible = bad_rows(_prices(series))
        if impossible.any():
            series = series.take(~impossible)
        # The remaining counts are those of the repaired rows.
        counts = scan(series.time, _prices(series), series.filled, step)
    # High and low must bound open and close: widen them where they do not.
    if counts.ohlc_errors:
        top = np.maximum(series.open, series.close)
        bottom = np.minimum(series.open, series.close)
        series = series.with_columns(high=np.maximum(series.high, top), low=np.minimum(series.low, bottom))
    spike_mask = find_spikes(series.close)
    filled = 0
    if fill_gaps and counts.missing_bars:
        series = fill(series)
        filled = int(np.count_nonzero(series.filled))
    report = CheckReport(
        symbol=candles.symbol,
        timeframe=candles.timeframe,
        rows=len(candles),
        start=int(series.time[0]) if len(series) else None,
        end=int(series.time[-1]) if len(series) else None,
        unsorted=first.unsorted,
        duplicates=duplicates,
        misaligned=counts.misaligned,
        gaps=counts.gaps,
        missing_bars=counts.missing_bars,
        longest_gap_bars=counts.longest_gap_bars,
        crowded=counts.crowded,
        mixed_units=candles.mixed_units,
        ohlc_errors=counts.ohlc_errors,
        nonfinite=first.nonfinite,
        nonpositive=first.nonpositive,
        negative_volume=first.negative_volume,
        zero_volume=counts.zero_volume,
        spikes=int(np.count_nonzero(spike_mask)),
        spike_times=tuple(int(t) for t in series.time[~series.filled][spike_mask]),
        filled=filled,
        synthetic=candles.synthetic,
    )
    return series, report


def _prices(candles: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The open, high, low, close and volume columns of a series."""
    return candles.open, candles.high, candles.low, candles.close, candles.volume


def find_spikes(close: np.ndarray, sigmas: float = SPIKE_SIGMAS) -> np.ndarray:
    """Flag bars whose close jumps away and straight back: an isolated log-return outlier.

    Bar i is a spike when the return into it and the return out of it are both beyond `sigmas` local
    robust sigmas, opposite in sign, and cancel to within half of the smaller one (the price came back).
    The local sigma is the median absolute return of the surrounding block of `_SCALE_BLOCK` returns, so
    calm and wild eras are each judged on their own terms and outliers cannot inflate it.
    Returns a bool mask over the bars (computed in one compiled pass, see `fastclean.spike_mask`).
    """
    from runtime.data.fastclean import spike_mask

    if len(close) < 3:
        return np.zeros(len(close), dtype=bool)
    return spike_mask(np.diff(np.log(close)), sigmas, _SCALE_BLOCK, _MAD_TO_SIGMA)


def fill(series: Candles) -> Candles:
    """Insert every missing bar as a flat bar at the previous close with zero volume, marked filled."""
    step = series.timeframe_ms
    full = np.arange(series.time[0], series.time[-1] + step, step, dtype=np.int64)
    # Position of each full-grid bar's latest real bar at or before it.
    source = np.searchsorted(series.time, full, side="right") - 1
    real = series.time[source] == full
    prev_close = series.close[source]
    return series.with_columns(
        time=full,
        open=np.where(real, series.open[source], prev_close),
        high=np.where(real, series.high[source], prev_close),
        low=np.where(real, series.low[source], prev_close),
        close=prev_close,
        volume=np.where(real, series.volume[source], 0.0),
        filled=~real | series.filled[source],
    )
