"""Panorama geometry: sphere <-> equirectangular pixels, gnomonic tiles, box math."""

from redact.geometry.boxes import (
    box_area,
    box_inter,
    box_inter_wrapped,
    box_ios,
    box_ios_wrapped,
    box_iou,
    box_iou_wrapped,
    clip_boxes,
    dilate_boxes,
    normalize_unwrapped,
    split_at_seam,
)
from redact.geometry.gnomonic import (
    GnomonicTile,
    rays_to_tile,
    remap_maps,
    render_tile,
    tile_boxes_to_pano,
    tile_rays,
)
from redact.geometry.sphere import (
    lonlat_to_pixel,
    lonlat_to_vec,
    pixel_to_lonlat,
    vec_to_lonlat,
)

__all__ = [
    "GnomonicTile",
    "box_area",
    "box_inter",
    "box_inter_wrapped",
    "box_ios",
    "box_ios_wrapped",
    "box_iou",
    "box_iou_wrapped",
    "clip_boxes",
    "dilate_boxes",
    "lonlat_to_pixel",
    "lonlat_to_vec",
    "normalize_unwrapped",
    "pixel_to_lonlat",
    "rays_to_tile",
    "remap_maps",
    "render_tile",
    "split_at_seam",
    "tile_boxes_to_pano",
    "tile_rays",
    "vec_to_lonlat",
]
