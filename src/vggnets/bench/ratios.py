"""Ours against the peer runtimes: the best peer at each precision, the ratio, and its lines in the text report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The ``compile`` value of a peer's row (the runtime that ran it; see ``vggnets.inference.backends``).
PEER_RUNTIMES = ("onnxruntime", "openvino")


def peer_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each of our paths (``ours <precision>``): the best peer at the precision it runs at, and ours / peer."""
    peers = [r for r in rows if r["compile"] in PEER_RUNTIMES]
    out = []
    for row in rows:
        if not row["path"].startswith("ours "):
            continue
        same = [p for p in peers if p["precision"] == row["precision"]]
        best = max(same, key=lambda p: p["images_per_s"], default=None)
        out.append(
            {
                "path": row["path"],
                "precision": row["precision"],
                "images_per_s": row["images_per_s"],
                "best_peer": best["path"] if best else None,
                "best_peer_images_per_s": best["images_per_s"] if best else None,
                "ratio": row["images_per_s"] / best["images_per_s"] if best else None,
            }
        )
    return out


def format_peers(report: dict[str, Any]) -> list[str]:
    """Lines for the text report: ours against the best peer at each precision, and the skipped peers."""
    ratios = report.get("peer_ratios") or []
    skipped = report.get("peers_skipped") or []
    if not ratios and not skipped:
        return []
    lines = [
        "",
        "| ours | img/s | best peer at that precision | its img/s | ours / peer |",
        "|---|---|---|---|---|",
    ]
    for r in ratios:
        peer = r["best_peer"] or "–"
        peer_ips = "–" if r["best_peer_images_per_s"] is None else f"{r['best_peer_images_per_s']:.2f}"
        ratio = "–" if r["ratio"] is None else f"**{r['ratio']:.2f}x**"
        lines.append(
            f"| {r['path']} ({r['precision']}) | {r['images_per_s']:.2f} | {peer} | {peer_ips} | {ratio} |"
        )
    lines += [f"- {line}" for line in skipped]
    return lines
