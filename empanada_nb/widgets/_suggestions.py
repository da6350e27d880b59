"""The viewer's patch suggestions: where the model is least sure, shown as boxes to accept or reject (a Viewer mixin).

Thin over ``empanada_nb.suggest``: ranking, non-overlap and the pick format live there. An accepted
suggestion goes through ``add_pick`` (the pick tool's path), so ``save_patches`` writes it like any
pick; a rejected one is remembered in ``rejected_suggestions`` and excluded from later suggestions.
"""

from __future__ import annotations

from typing import Any

from .. import suggest as SG
from ..patches import pick_plane


class SuggestionTools:
    """Mixin of ``Viewer``: ``suggest``, ``accept_suggestion``, ``reject_suggestion``.

    Needs the Viewer's ``source``, ``picks``, ``suggestions``, ``rejected_suggestions``, ``axis``,
    ``patch_size`` and ``model``; its public methods are documented as the Viewer's.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> from empanada_nb.widgets._suggestions import SuggestionTools
    >>> isinstance(Viewer(np.zeros((2, 32, 32), np.uint8)), SuggestionTools)
    True
    """

    def suggest(self, model=None, n: int = 8, size: int | None = None, **kwargs) -> list[dict]:
        """Suggest ``n`` patches to label next, where ``model`` is least sure (``empanada_nb.suggest_patches``).

        Suggestions lie on slices along the viewed ``axis``, overlap neither each other, the picks nor
        the rejected suggestions, and replace the previous suggestions.

        Parameters
        ----------
        model : torch.nn.Module, optional
            The current model (the viewer's ``model`` by default).
        n : int
            How many patches to suggest.
        size : int, optional
            Side of the patches (``patch_size`` by default).
        **kwargs
            Passed to ``suggest_patches`` (``slices``, ``max_slices``, ``flips``, ``ortho``, ``slice_gap``, ...).

        Returns
        -------
        list of dict
            The suggestions, most uncertain first (also in ``suggestions``), picks' format plus ``"score"``.

        Raises
        ------
        ValueError
            Without a model.

        Examples
        --------
        >>> import numpy as np
        >>> import empanada_nb as enb
        >>> v = enb.Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> model = enb.build_model("PanopticDeepLab", "resnet18")
        >>> len(v.suggest(model, n=2, size=16, flips=False)), len(v.suggestions)
        (2, 2)
        """
        model = model if model is not None else self.model
        if model is None:
            raise ValueError("suggest needs a model: pass one, or set viewer.model")
        axis = self.axis if self.source.ndim == 3 else "xy"
        ranked = SG.suggest_patches(
            model,
            self.source,
            n=int(n),
            patch_size=int(size or self.patch_size),
            exclude=list(self.picks) + list(self.rejected_suggestions),
            axis=axis,
            return_scores=True,
            **kwargs,
        )
        self.suggestions = [{**p, "score": round(s, 3)} for p, s in ranked]
        self.message = f"{len(ranked)} suggested patch(es): accept or reject each"
        return list(self.suggestions)

    def _take_suggestion(self, i: int) -> dict[str, Any]:
        items = list(self.suggestions)
        if not -len(items) <= int(i) < len(items):
            raise IndexError(f"no suggestion {i}: there are {len(items)}")
        s = items.pop(int(i))
        self.suggestions = items
        return {k: s[k] for k in ("axis", "z", "y", "x", "size")}

    def accept_suggestion(self, i: int) -> dict:
        """Make suggestion ``i`` a pick (as the pick tool would at its centre) and remove it from ``suggestions``.

        Parameters
        ----------
        i : int
            Its index in ``suggestions``.

        Returns
        -------
        dict
            The new pick.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.suggestions = [{"axis": "xy", "z": 1, "y": 8, "x": 8, "size": 16, "score": 3.0}]
        >>> v.accept_suggestion(0), v.suggestions
        ({'axis': 'xy', 'z': 1, 'y': 8, 'x': 8, 'size': 16}, [])
        """
        s = self._take_suggestion(i)
        axis, index, row, col = pick_plane(s)
        pick = self.add_pick(axis, index, row, col, size=s["size"])
        self.message = f"accepted a suggested patch: pick {len(self.picks)}"
        return pick

    def reject_suggestion(self, i: int) -> dict:
        """Remove suggestion ``i`` and remember it in ``rejected_suggestions``, so it is not suggested again.

        Parameters
        ----------
        i : int
            Its index in ``suggestions``.

        Returns
        -------
        dict
            The rejected patch.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.suggestions = [{"axis": "xy", "z": 1, "y": 8, "x": 8, "size": 16, "score": 3.0}]
        >>> v.reject_suggestion(0) == v.rejected_suggestions[0], v.suggestions
        (True, [])
        """
        s = self._take_suggestion(i)
        self.rejected_suggestions = list(self.rejected_suggestions) + [s]
        self.message = "rejected a suggested patch (not suggested again)"
        return s
