"""Digits drawn with any pen, read by ``mnistseg predict``: how many come out right.

The set is ``benchmarks/drawn_digits.py``'s: every digit as hand-like strokes with pens from
2% to 15% of the digit's height (2 random drawings each), and in each installed TrueType
font, dark on light and light on dark; no training saw any of them. A picture is read
right when ``describe_mask`` finds exactly its digit. Rows per pen and per font, the share
read right, with and without the stroke normalisation (the model and everything else the
same). Usage::

    .venv/bin/python benchmarks/pen_widths.py                 # the bundled model
    .venv/bin/python benchmarks/pen_widths.py --checkpoint runs/best
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from drawn_digits import drawn_digits
from mnistseg.checkpoint import BUNDLED_MODEL
from mnistseg.inference import load_for_inference
from mnistseg.predict import describe_mask, segment
from record import benchmark_parser, write_record


def read_all(model, normalise: bool) -> dict[str, list[int]]:
    """``{row: [right, total]}`` over the whole set."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    names = model.record.class_names
    for item in drawn_digits():
        row = f"pen {item.pen_share:.0%} of the height" if item.style == "strokes" else f"font {item.style}"
        mask = segment(item.image, model, normalise_pen=normalise).mask
        rows[row][0] += describe_mask(mask, names)["digits"] == [item.digit]
        rows[row][1] += 1
    return dict(rows)


def main() -> None:
    parser = benchmark_parser(__doc__, "pen_widths.json")
    parser.add_argument("--checkpoint", type=Path, default=BUNDLED_MODEL, help="model (default: the bundled one)")
    args = parser.parse_args()
    model = load_for_inference(args.checkpoint)
    with_normalisation, without = read_all(model, True), read_all(model, False)
    print(f"model: {model.describe()}")
    print(f"{'drawn with':<40} {'read right':>12} {'without normalising':>20}")
    for row, (right, total) in with_normalisation.items():
        print(f"{row:<40} {right:>6}/{total:<5} {without[row][0]:>14}/{total}")
    totals = {name: [sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values())]
              for name, rows in (("with", with_normalisation), ("without", without))}  # fmt: skip
    right, total = totals["with"]
    print(f"{'all':<40} {right:>6}/{total:<5} {totals['without'][0]:>14}/{total}   ({right / total:.1%} read right)")
    write_record(args.json, model=model.describe(), rows=with_normalisation, rows_without_normalising=without,
                 read_right=right / total, read_right_without_normalising=totals["without"][0] / total)  # fmt: skip


if __name__ == "__main__":
    main()
