"""YOLACT and YOLACT++ real-time instance segmentation (Bolya et al., ICCV 2019 / TPAMI 2020).

Modules, one idea each: ``backbone`` (ResNet with optional deformable convs, DarkNet-53), ``dcn``, ``fpn``,
``protonet``, ``head``, ``anchors``, ``box_coding``, ``matching``, ``loss``, ``maskiou``, ``postprocess``,
``model`` (the mmengine ``Yolact`` model), ``keymaps`` (official key names -> ours), ``configs`` (the released
models' settings, read from ``forge/configs/model/yolact``), ``convert`` (official checkpoints -> ours), ``infer``
(``forge-infer yolact``), ``export`` (ONNX). Layers: ``tests/yolact/test_layers.py``.
"""
