"""Loss modules: drop-in parity, weights as buffers, accepted weight forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import LabelEncoder
from torch import nn

from weightlab.losses import BCEWithLogitsLoss, BinaryCrossEntropyLoss, CrossEntropyLoss


def test_swap_for_nn_cross_entropy_gives_identical_numbers():
    torch.manual_seed(0)
    w = torch.tensor([1.0, 3.0, 0.5])
    x = torch.randn(16, 3, requires_grad=True)
    y = torch.randint(0, 3, (16,))
    ours = CrossEntropyLoss(class_weight=w, label_smoothing=0.1)(x, y)
    theirs = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y)
    assert torch.equal(ours, theirs) or torch.allclose(ours, theirs, atol=1e-7)
    (g1,) = torch.autograd.grad(ours, x)
    (g2,) = torch.autograd.grad(theirs, x)
    torch.testing.assert_close(g1, g2)


def test_swap_for_nn_bce_with_logits():
    assert BCEWithLogitsLoss is BinaryCrossEntropyLoss
    x = torch.randn(8, 4)
    t = (torch.rand(8, 4) > 0.5).float()
    pw = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(
        BCEWithLogitsLoss(pos_weight=pw)(x, t), nn.BCEWithLogitsLoss(pos_weight=pw)(x, t)
    )


@pytest.mark.parametrize(
    "weights",
    [
        [1.0, 2.0, 3.0],
        np.array([1.0, 2.0, 3.0]),
        torch.tensor([1.0, 2.0, 3.0]),
    ],
)
def test_weight_forms_are_equivalent(weights):
    loss = CrossEntropyLoss(weights)
    torch.testing.assert_close(loss.class_weight, torch.tensor([1.0, 2.0, 3.0]))


def test_mapping_with_label_encoder_names():
    enc = LabelEncoder().fit(["cat", "dog", "emu"])
    loss = CrossEntropyLoss({"emu": 5.0, "cat": 0.5}, classes=enc)
    torch.testing.assert_close(loss.class_weight, torch.tensor([0.5, 1.0, 5.0]))
    loss = CrossEntropyLoss({1: 2.0}, num_classes=3)
    torch.testing.assert_close(loss.class_weight, torch.tensor([1.0, 2.0, 1.0]))


def test_weights_are_buffers_in_state_dict_and_follow_to():
    loss = CrossEntropyLoss([1.0, 2.0])
    assert "class_weight" in dict(loss.named_buffers())
    assert "class_weight" in loss.state_dict()
    double = loss.to(torch.float64)
    assert double.class_weight.dtype == torch.float64
    fresh = CrossEntropyLoss([9.0, 9.0])
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh.class_weight, torch.tensor([1.0, 2.0]))
    bce = BinaryCrossEntropyLoss([1.0, 2.0], pos_weight=[3.0])
    assert set(bce.state_dict()) == {"class_weight", "pos_weight"}


def test_meta_device_move_follows_to():
    loss = CrossEntropyLoss([1.0, 2.0, 3.0]).to("meta")
    assert loss.class_weight.device.type == "meta"


def test_sample_weight_at_call_time():
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 0, 1])
    s = torch.tensor([1.0, 0.0, 2.0, 1.0, 1.0])
    loss = CrossEntropyLoss(reduction="sum")
    per = nn.CrossEntropyLoss(reduction="none")(x, y)
    torch.testing.assert_close(loss(x, y, sample_weight=s), (per * s).sum())


def test_repr_names_the_settings():
    assert "normalize=None" in repr(CrossEntropyLoss())
    assert "reduction='sum'" in repr(BinaryCrossEntropyLoss(reduction="sum"))
