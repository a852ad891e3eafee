"""Model review over an evaluation: the questions a quality engineer signs a release off with.

- :mod:`~.quadrants`: right for the right reason — correct / wrong × map on / off the defect,
  the misclassified rows, the confusion matrix of the evaluated split;
- :mod:`~.diff`: release against release on the same images, paired bootstrap intervals, the
  images that changed;
- :mod:`~.bias`: positional bias — the mean map in image coordinates beside the boxes' density,
  border and corner shares, and a flag when the maps' prior does not follow the boxes';
- :mod:`~.annotation_qa`: images whose confident, correct evidence lies off every box (or that
  have no box), and map-derived boxes exported as VOC XML for relabelling;
- :mod:`~.maps`: the few maps a gallery or an export shows, computed again.

Import the submodules directly (``from cam_core.review.quadrants import quadrant_counts``).
"""
