"""What the host's egress services hold at once for sandboxes (the resolver's questions in flight and
TCP connections, dns.py; the egress proxy's connections, egress_proxy.py), bounded three ways: all
sandboxes together, each sandbox's (by its address), and each team's. A sandbox bound alone let a
team that runs a handful of sandboxes fill the whole budget, and every other team's sandboxes were
refused; now one team's sandboxes together hold at most TEAM_SHARE of it.

A sandbox's team comes with its network (Attached.team, network.py), looked up by its address in the
resolver's table: one dict lookup per question or connection. The counts go with what they count
(a team's entry is removed at 0), so nothing stays of a sandbox that is gone.
"""

from __future__ import annotations

# One team's share of each budget. Half: whatever one team's sandboxes do, the other teams keep at
# least half of every budget; and half still holds several sandboxes at their own bound (4 asking
# names at once, 8 holding the resolver's TCP connections, 2 holding proxied ones), so a busy team's
# sandboxes are seldom refused before their own bound. Not a fair share among many busy teams (two
# may fill a budget together). A server of one team (every key in `default`) may give it all
# (SANDLOT_EGRESS_TEAM_SHARE=1: docs/configuration.md).
TEAM_SHARE = 0.5


class Budget:
    """Slots of one shared resource: `total` at once, `per_sandbox` of one source address's,
    `per_team` of one team's sandboxes' (a sandbox of no team, or an unknown source, has only the
    other two bounds). Used on one event loop's thread."""

    def __init__(self, total: int, per_sandbox: int, share: float = TEAM_SHARE):
        self.total, self.per_sandbox = total, per_sandbox
        self.per_team = max(1, int(total * share))
        self.held = 0
        self._sources: dict[str, int] = {}
        self._teams: dict[str, int] = {}

    def take(self, source: str, team: str | None) -> bool:
        """A slot for `source` of `team`, if every bound leaves one (False: refuse it)."""
        if (self.held >= self.total or self._sources.get(source, 0) >= self.per_sandbox
                or (team is not None and self._teams.get(team, 0) >= self.per_team)):
            return False
        self.held += 1
        _count(self._sources, source, 1)
        _count(self._teams, team, 1)
        return True

    def give_back(self, source: str, team: str | None) -> None:
        """The slot `take(source, team)` gave (the same team: a sandbox may be gone meanwhile)."""
        self.held -= 1
        _count(self._sources, source, -1)
        _count(self._teams, team, -1)


def _count(counts: dict[str, int], key: str | None, by: int) -> None:
    """Add `by` to a count (a count down to 0 goes)."""
    if key is None:
        return
    left = counts.get(key, 0) + by
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
