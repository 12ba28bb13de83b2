"""Refusals computed from what works: a refused (backend, board) pair names a route that is then accepted.

A route is only suggested after both sides accepted it (edgekit.project.check_pair) and the model fits the
board with that backend (edgekit.build.check_fit, on edgekit.analyze's figures): following a suggestion never
meets another refusal, so the advice cannot loop. Without such a route, the message says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    board: str
    backend: str
    same_board: bool

    def flags(self) -> str:
        return f"--backend {self.backend}" if self.same_board else f"--board {self.board} --backend {self.backend}"


def works(graph, board, backend: str) -> bool:
    """Whether `edgekit build` (up to generating the project) accepts this model, board and backend."""
    from edgekit.analyze import analyze
    from edgekit.build import check_fit, check_tflm_arena
    from edgekit.errors import EdgekitError
    from edgekit.project import check_pair

    if not check_pair(graph, board, backend):
        return False
    try:
        report = analyze(graph, board, backend)
        if report.get("tflm_error"):
            return False
        placement = check_fit(graph, board, backend, report)
        if backend == "tflm":
            check_tflm_arena(graph, board, None, placement)
    except EdgekitError:
        return False
    return True


def find_route(graph, board, backend: str) -> Route | None:
    """The nearest accepted route: this board with the other backend, else another board (the same
    architecture first, then by name) with this backend, then with the other."""
    from edgekit.backends import BACKEND_NAMES
    from edgekit.boards import all_boards

    others = [b for b in BACKEND_NAMES if b != backend]
    for other in others:
        if works(graph, board, other):
            return Route(board.name, other, True)
    candidates = sorted((b for b in all_boards().values() if b.name != board.name),
                        key=lambda b: (b.arch != board.arch, b.name))
    for name in [backend] + others:
        for candidate in candidates:
            if works(graph, candidate, name):
                return Route(candidate.name, name, False)
    return None


def refusal(graph, board, backend: str, reason: str) -> str:
    """The one-line message of a refused pair: why, and a route that works (or that none does)."""
    route = find_route(graph, board, backend)
    if route is None:
        return f"{reason}; no board and backend edgekit has can build {graph.name}"
    from edgekit.platforms.sdk_tools import tflm_tree
    import os

    note = ""
    if route.backend == "tflm" and not tflm_tree(os.environ.get("TFLM_DIR")):
        note = " (generated; set TFLM_DIR to compile)"
    return f"{reason}; use {route.flags()}{note}"
