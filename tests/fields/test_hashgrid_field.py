import dataclasses

import pytest
import torch

from onefield import fields
from onefield.errors import UserError
from onefield.fields import SIGMA_LOGIT_RANGE, trunc_exp
from onefield.fields.hashgrid import HashGridField, HashGridFieldConfig

AABB = (-1.0, -2.0, -1.0, 1.0, 2.0, 3.0)
SMALL = {"n_levels": 4, "log2_table_size": 10, "max_resolution": 64, "hidden": 16, "color_hidden": 16}


def test_registry_builds_hashgrid_and_names_errors():
    assert "hashgrid" in fields.names()
    field = fields.build("hashgrid", AABB, SMALL)
    assert isinstance(field, HashGridField) and field.config == HashGridFieldConfig(**SMALL)
    assert fields.config_class("hashgrid") is HashGridFieldConfig
    with pytest.raises(ValueError, match="unknown field backend .nope.; available: finr, hashgrid, mlp, splats, strivec, tensorf-cp, tensorf-vm, triplane"):
        fields.build("nope", AABB)
    with pytest.raises(ValueError, match="unknown option\\(s\\) for field 'hashgrid': colour"):
        fields.build("hashgrid", AABB, {"colour": 3})
    with pytest.raises(TypeError, match="takes a HashGridFieldConfig"):
        fields.build("hashgrid", AABB, object())


def test_outputs_shapes_ranges_and_box():
    field = fields.build("hashgrid", AABB, SMALL)
    x = torch.rand(200, 3) * torch.tensor([2.0, 4.0, 4.0]) + torch.tensor([-1.0, -2.0, -1.0])
    d = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    sigma, rgb = field(x, d)
    assert sigma.shape == (200,) and rgb.shape == (200, 3)
    torch.testing.assert_close(field.density(x), sigma)
    torch.testing.assert_close(sigma, torch.exp(field.raw(x)[0]))
    _, feat = field.features(x)
    assert feat.shape == (200, 15)
    # features() clips the logit for distillation; the rendered density is not clipped (it would fog empty space)
    for bias, bound in ((20.0, SIGMA_LOGIT_RANGE[1]), (-20.0, SIGMA_LOGIT_RANGE[0])):
        extreme = fields.build("hashgrid", AABB, {**SMALL, "density_bias": bias})
        raw_logit = extreme.raw(x)[0]
        assert float((raw_logit - bound).abs().min()) > 5  # far outside the clip range...
        assert torch.equal(extreme.features(x)[0], torch.full_like(raw_logit, bound))  # ...clipped to its edge
        torch.testing.assert_close(extreme.density(x), torch.exp(raw_logit))  # and rendered unclipped
    outside = torch.tensor([[1.5, 0.0, 0.0], [0.0, -2.5, 0.0], [0.0, 0.0, 3.2]])
    assert field.density(outside).tolist() == [0.0, 0.0, 0.0]
    # colour depends on the view direction through the SH encoding
    x0 = x[:1].repeat(2, 1)
    _, rgb2 = field(x0, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    assert not torch.allclose(rgb2[0], rgb2[1])


def test_every_parameter_group_gets_gradients():
    field = fields.build("hashgrid", AABB, SMALL)
    x = torch.rand(500, 3) * 1.8 - 0.9
    d = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    sigma, rgb = field(x, d)
    (sigma.sum() + rgb.sum()).backward()
    groups = field.param_groups()
    assert [g["name"] for g in groups] == ["encoding", "mlp"]
    assert sum(len(g["params"]) for g in groups) == len(list(field.parameters()))
    for g in groups:
        assert g["lr"] == 1e-2
        for p in g["params"]:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_coarse_to_fine_switches_the_levels_on_in_equal_steps():
    """From `coarse_levels` at the start to every level at `coarse_to_fine` of the budget, one level per
    equal stage; a step at the start moves only the active levels' tables; a loaded field uses them all."""
    config = {**SMALL, "n_levels": 8, "log2_table_size": 12, "coarse_to_fine": 0.4, "coarse_levels": 3}
    field = fields.build("hashgrid", AABB, config)
    assert field.levels == 8
    seen = []
    for p in range(101):
        assert field.update_schedule(p / 100, None) is False  # the optimizer keeps the same tables
        seen.append(field.levels)
    assert seen == sorted(seen) and seen[0] == 3 and seen[40:] == [8] * 61
    assert [seen[:40].count(k) for k in range(3, 8)] == [7, 7, 6, 7, 7]  # 0.4 / 6 of the budget per stage
    assert fields.build("hashgrid", AABB, SMALL).levels_at(0.0) == 4  # no schedule: every level from the start
    with pytest.raises(UserError, match="coarse_to_fine"):  # past the budget: the final field would miss levels
        fields.build("hashgrid", AABB, {**config, "coarse_to_fine": 1.5})

    field.update_schedule(0.0, None)
    before = field.encoding.table.detach().clone()
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-2)
    x = torch.rand(2000, 3) * 1.8 - 0.9
    d = torch.nn.functional.normalize(torch.randn(2000, 3), dim=-1)
    sigma, rgb = field(x, d)
    (sigma.sum() + rgb.sum()).backward()
    optimizer.step()
    moved = (field.encoding.table.detach() != before).flatten(1).any(1)
    assert moved.tolist() == [True] * 3 + [False] * 5


def test_trunc_exp_clamps_its_gradient():
    x = torch.tensor([0.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), torch.exp(x.detach()))
    torch.testing.assert_close(x.grad, torch.tensor([1.0, float(torch.exp(torch.tensor(15.0)))]))


def test_config_round_trips_through_plain_data():
    field = fields.build("hashgrid", AABB, SMALL)
    plain = field.config_dict()
    again = fields.build("hashgrid", AABB, plain)
    assert dataclasses.asdict(again.config) == plain
    again.load_state_dict(field.state_dict())
    x = torch.rand(10, 3) * 0.5
    torch.testing.assert_close(again.density(x), field.density(x))


def test_contraction_beyond_the_base_box():
    field = fields.build("hashgrid", AABB, SMALL, cascades=3)  # the scene reaches 4x the base box
    center = torch.tensor([0.0, 0.0, 1.0])
    half = torch.tensor([1.0, 2.0, 2.0])
    # inside the base box: linear, onto the middle half of [0, 1]
    x = center + half * torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(field.normalize(x), torch.tensor([[0.625, 0.25, 0.5], [0.5, 0.5, 0.5]]))
    # outside: continuous at the box, monotonic, and approaching the edge of [0, 1] at infinity
    t = torch.tensor([1.0, 1.5, 3.0, 4.0])[:, None]
    u = field.normalize(center + half * torch.tensor([1.0, 0.5, 0.0]) * t)
    assert u[0, 0] == pytest.approx(0.75) and bool((u[1:, 0] > u[:-1, 0]).all()) and float(u[-1, 0]) < 1.0
    assert u[2, 0] == pytest.approx(0.5 + 0.25 * (2 - 1 / 3)) and u[2, 1] == pytest.approx(0.5 + 0.25 * (2 - 1 / 3) * 0.5)
    # density is zero beyond the scene (4x the base box), not at the base box
    far = center + half * torch.tensor([[3.9, 0.0, 0.0], [4.1, 0.0, 0.0]])
    sigma = field.density(far)
    assert float(sigma[0]) > 0 and float(sigma[1]) == 0


def test_a_backend_must_implement_the_contract():
    from onefield.fields.base import Field

    class Incomplete(Field):
        name = "incomplete"

        def raw(self, x):
            return x[:, 0], x.new_zeros(x.shape[0], 15)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(None, AABB)
