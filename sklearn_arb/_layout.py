"""The row layout of token maps: ``[observed P | bootstrap 1 P | ... | bootstrap B P]``.

Every reader of an extractor's output (the regularizer, the scorers, the study, the
command line) splits its rows through :class:`MapLayout`, so the layout has one owner.
The extractor attaches the layout to its output (:class:`TokenMaps`), which lets the
regularizer learn B from the maps it is given instead of trusting a second copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MapLayout", "TokenMaps", "layout_of", "resolve_layout", "with_layout"]


@dataclass(frozen=True)
class MapLayout:
    """Where each map sits in a row: P observed scores, then B bootstrap maps of P.

    Parameters
    ----------
    n_tokens : int
        P, patch tokens per map.
    n_bootstrap : int
        B, bootstrap maps per image (0: the observed map alone).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import MapLayout
    >>> layout = MapLayout(n_tokens=3, n_bootstrap=2)
    >>> X = np.arange(18.0).reshape(2, 9)
    >>> layout.width, layout.observed(X)[0]
    (9, array([0., 1., 2.]))
    >>> observed, bootstrap = layout.split(X)
    >>> bootstrap.shape
    (2, 2, 3)
    >>> bool((layout.join(observed, bootstrap) == X).all())
    True
    >>> layout.names()[[0, 3, 8]]
    array(['observed_t0', 'bootstrap1_t0', 'bootstrap2_t2'], dtype=object)
    """

    n_tokens: int
    n_bootstrap: int

    def __post_init__(self) -> None:
        if int(self.n_tokens) < 1 or int(self.n_bootstrap) < 0:
            raise ValueError(
                f"A layout needs n_tokens >= 1 and n_bootstrap >= 0; got "
                f"n_tokens={self.n_tokens}, n_bootstrap={self.n_bootstrap}."
            )
        object.__setattr__(self, "n_tokens", int(self.n_tokens))
        object.__setattr__(self, "n_bootstrap", int(self.n_bootstrap))

    @property
    def n_maps(self) -> int:
        """Maps per row, 1 + B."""
        return 1 + self.n_bootstrap

    @property
    def width(self) -> int:
        """Columns per row, (1 + B) P."""
        return self.n_maps * self.n_tokens

    def __str__(self) -> str:
        blocks = [f"bootstrap {b} P" for b in range(1, self.n_bootstrap + 1)]
        if len(blocks) > 2:
            blocks[1:-1] = ["..."]
        return f"[{' | '.join(['observed P', *blocks])}] with P = {self.n_tokens}"

    @classmethod
    def from_width(cls, n_features: int, n_bootstrap: int) -> MapLayout:
        """The layout of rows of ``n_features`` columns holding ``1 + n_bootstrap``
        maps; a clear ValueError when they cannot be split evenly.

        Parameters
        ----------
        n_features : int
            Columns per row.
        n_bootstrap : int
            B.

        Returns
        -------
        layout : MapLayout

        Examples
        --------
        >>> from sklearn_arb import MapLayout
        >>> MapLayout.from_width(392, n_bootstrap=1)
        MapLayout(n_tokens=196, n_bootstrap=1)
        """
        n_maps = 1 + int(n_bootstrap)
        if n_features < n_maps or n_features % n_maps:
            raise ValueError(
                f"X has {n_features} feature(s) (columns), which cannot be split into "
                f"1 + n_bootstrap = {n_maps} maps of equal width. Pass the "
                "extractor's output unchanged, or set n_bootstrap to the extractor's "
                "n_bootstrap."
            )
        return cls(n_tokens=n_features // n_maps, n_bootstrap=int(n_bootstrap))

    def check(self, X: np.ndarray) -> None:
        """Raise a clear ValueError unless ``X`` is 2-D with this layout's width."""
        if np.ndim(X) != 2 or np.shape(X)[1] != self.width:
            raise ValueError(
                f"Token maps of shape {np.shape(X)} do not have the layout {self}: "
                f"expected (n_images, {self.width})."
            )

    def observed(self, X: np.ndarray) -> np.ndarray:
        """The observed maps ``(n, P)``: a view of ``X``."""
        self.check(X)
        return X[:, : self.n_tokens]

    def bootstrap(self, X: np.ndarray) -> np.ndarray:
        """The bootstrap maps side by side ``(n, B P)``: a view of ``X``."""
        self.check(X)
        return X[:, self.n_tokens :]

    def split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observed maps ``(n, P)`` and bootstrap maps ``(n, B, P)``, views of ``X``."""
        self.check(X)
        X = np.asarray(X)
        bootstrap = X[:, self.n_tokens :].reshape(len(X), self.n_bootstrap, -1)
        return X[:, : self.n_tokens], bootstrap

    def join(self, observed: ArrayLike, bootstrap: ArrayLike) -> np.ndarray:
        """Rows in this layout from observed ``(n, P)`` and bootstrap maps
        ``(n, B, P)`` or ``(n, B P)``; the inverse of :meth:`split`."""
        observed = np.asarray(observed)
        bootstrap = np.asarray(bootstrap).reshape(len(observed), -1)
        X = np.concatenate([observed, bootstrap], axis=1)
        self.check(X)
        return X

    def names(self) -> np.ndarray:
        """Column names: ``observed_t<k>``, then ``bootstrap<b>_t<k>``."""
        blocks = ["observed"] + [f"bootstrap{b}" for b in range(1, self.n_maps)]
        return np.asarray(
            [f"{block}_t{t}" for block in blocks for t in range(self.n_tokens)],
            dtype=object,
        )


class TokenMaps(np.ndarray):
    """An ndarray of token maps that knows its :class:`MapLayout`.

    What :meth:`AttentionExtractor.transform` returns. It behaves as a plain
    ndarray; ``layout`` survives row selection (``X[idx]``, cross-validation folds)
    and is dropped by anything that changes the columns.
    """

    layout: MapLayout | None

    def __array_finalize__(self, obj: np.ndarray | None) -> None:
        layout = getattr(obj, "layout", None)
        # A view or copy with other columns is no longer in the layout.
        if layout is not None and (self.ndim != 2 or self.shape[1] != layout.width):
            layout = None
        self.layout = layout

    def __reduce__(self):
        # Pickled (joblib, multiprocessing) with the layout, not as a bare array.
        constructor, args, state = super().__reduce__()
        return constructor, args, (state, self.layout)

    def __setstate__(self, state) -> None:
        array_state, self.layout = state
        super().__setstate__(array_state)


def with_layout(maps: ArrayLike, layout: MapLayout) -> TokenMaps:
    """``maps`` (n, width) as :class:`TokenMaps` carrying ``layout`` (no copy).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import MapLayout, layout_of
    >>> from sklearn_arb._layout import with_layout
    >>> X = with_layout(np.zeros((4, 6)), MapLayout(n_tokens=2, n_bootstrap=2))
    >>> layout_of(X[1:3])
    MapLayout(n_tokens=2, n_bootstrap=2)
    >>> layout_of(X[:, :2]) is None, layout_of(np.zeros((4, 6))) is None
    (True, True)
    """
    maps = np.asarray(maps)
    layout.check(maps)
    tagged = maps.view(TokenMaps)
    tagged.layout = layout
    return tagged


def layout_of(X: object) -> MapLayout | None:
    """The layout an extractor attached to its output; None for any other input.

    Parameters
    ----------
    X : object
        Token maps, e.g. :meth:`AttentionExtractor.transform`'s output.

    Returns
    -------
    layout : MapLayout or None

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import layout_of
    >>> layout_of(np.ones((2, 8))) is None
    True
    """
    return getattr(X, "layout", None) if isinstance(X, TokenMaps) else None


def resolve_layout(
    n_bootstrap: int | str, attached: MapLayout | None, n_features: int
) -> MapLayout:
    """The layout of maps of ``n_features`` columns, for an estimator's
    ``n_bootstrap`` parameter: the layout attached to them, or ``n_bootstrap``'s.

    ``"auto"`` reads B from the attached layout, and takes B = 1 for a plain
    array; an int must agree with an attached layout (a clear ValueError where
    they disagree, or where the width cannot be split).

    Parameters
    ----------
    n_bootstrap : "auto" or int
        The estimator's parameter.
    attached : MapLayout or None
        ``layout_of(X)``.
    n_features : int
        Columns of ``X``.

    Returns
    -------
    layout : MapLayout

    Examples
    --------
    >>> from sklearn_arb import MapLayout
    >>> from sklearn_arb._layout import resolve_layout
    >>> resolve_layout("auto", None, 8)
    MapLayout(n_tokens=4, n_bootstrap=1)
    >>> resolve_layout("auto", MapLayout(2, 3), 8)
    MapLayout(n_tokens=2, n_bootstrap=3)
    """
    if n_bootstrap == "auto":
        n_bootstrap = 1 if attached is None else attached.n_bootstrap
    elif attached is not None and attached.n_bootstrap != n_bootstrap:
        raise ValueError(
            f"n_bootstrap={n_bootstrap} but the extractor's maps hold "
            f"n_bootstrap={attached.n_bootstrap} bootstrap maps per image. Set "
            "n_bootstrap='auto' to read it from the maps, or give both steps "
            "the same n_bootstrap."
        )
    return attached or MapLayout.from_width(n_features, n_bootstrap)
