"""Looking at files: what ``inspect`` reports (``files.inspect_file``: tensors, statistics,
previews, the data's pictures), the comparison of two outputs (``diff``) and the plots
(``plot``). Modules are imported one by one: the header path needs neither numpy nor torch."""
