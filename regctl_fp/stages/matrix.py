"""Matrix cells: one image per combination of axis values, layers concatenated in axis order.

Config merge rules: os/architecture must agree across axes; env is the union of the axes' variables
and two different values for one variable is an error; entrypoint, cmd, workdir and user come from the
axis the recipe names (or from the only axis that sets them); labels are merged, later axes winning.
A path present in two axes is an error unless the recipe allows overwriting. Layers are reused blob for
blob, so cells that share an axis value share its layers in the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InvalidInput
from ..oci.config import History, ImageConfig
from ..oci.image import Image

_PROCESS = ("Entrypoint", "Cmd", "WorkingDir", "User")


def cell_tag(values: Sequence[str]) -> str:
    return "-".join(values)


def merge_cell(axes: Sequence[tuple[str, str, Image]], *, entrypoint_axis: str | None,
               files: Mapping[tuple[str, str], Mapping[str, str]] | None = None, overwrite: bool = False) -> Image:
    """The image of one cell. ``axes`` is [(axis, value, image)] in layer order; ``files`` (optional) maps
    (axis, value) to the paths that axis value's image holds, for the overlap check."""
    first = axes[0][2]
    platform = first.config.platform
    for axis, value, img in axes[1:]:
        p = img.config.platform
        if not (p.matches(platform) and platform.matches(p)):  # arm64 and arm64/v8 are one platform
            raise InvalidInput(f"axis {axis}={value} is {p}, but {axes[0][0]}={axes[0][1]} is {platform}")
    if files is not None and not overwrite:
        seen: dict[str, str] = {}
        for axis, value, _ in axes:
            for path in sorted(files[(axis, value)]):
                if path in seen:
                    raise InvalidInput(f"/{path} is in both {seen[path]} and {axis}={value}; allow it with "
                                       "overwrite: true (the later axis wins)")
                seen[path] = f"{axis}={value}"
    env: dict[str, str] = {}
    owner: dict[str, str] = {}
    for axis, value, img in axes:
        for key, val in img.config.env_map.items():
            if key in env and env[key] != val:
                raise InvalidInput(f"env {key} is {env[key]!r} in {owner[key]} but {val!r} in {axis}={value}")
            env.setdefault(key, val)
            owner.setdefault(key, f"{axis}={value}")
    process_axis = entrypoint_axis
    if process_axis is None:
        setters = [axis for axis, _, img in axes if any(k in img.config.container for k in _PROCESS[:2])]
        if len(setters) > 1:
            raise InvalidInput(f"axes {', '.join(setters)} all set an entrypoint or cmd; name one with "
                               "'entrypoint: AXIS'")
        process_axis = setters[0] if setters else None
    process = next((img for axis, _, img in axes if axis == process_axis), None)
    labels: dict[str, str] = {}
    for _, _, img in axes:
        labels.update(img.config.labels)
    config = ImageConfig.new(os=platform.os, architecture=platform.architecture, variant=platform.variant,
                             created=max((img.config.created or "") for _, _, img in axes) or None)
    container: dict[str, object] = {"Env": [f"{k}={v}" for k, v in env.items()]}
    if labels:
        container["Labels"] = dict(sorted(labels.items()))
    if process is not None:
        for key in _PROCESS:
            if key in process.config.container:
                container[key] = process.config.container[key]
    image = Image(config=config.with_container(**container))
    for axis, value, img in axes:
        history = [h for h in img.config.history if not h.empty_layer]
        for i, layer in enumerate(img.layers):
            created_by = history[i].created_by if i < len(history) and history[i].created_by else "layer"
            image = image.appended(layer, History(created=img.config.created,
                                                  created_by=f"{axis}={value}: {created_by}"))
    return image
