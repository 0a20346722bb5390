"""DiscriminativeLoss against a slow, literal transcription of De Brabandere et al. 2017, eq. (1)-(4).

    L_var  = 1/C sum_c 1/N_c sum_i [ ||mu_c - x_i|| - delta_v ]_+^2
    L_dist = 1/(C(C-1)) sum_{cA != cB} [ 2 delta_d - ||mu_cA - mu_cB|| ]_+^2
    L_reg  = 1/C sum_c ||mu_c||
    L      = alpha L_var + beta L_dist + gamma L_reg
computed per image (background id 0 excluded) and averaged over the images of the batch; an image
with no instance contributes 0 to every term, one with a single instance has no distance term.
"""

from __future__ import annotations

import pytest
import torch

from seglab.errors import ConfigError
from seglab.losses import DiscriminativeLoss

torch.manual_seed(0)


def paper_loss(emb, inst, delta_v, delta_d, alpha, beta, gamma):
    """Loops over images, instances and pixels, exactly as the equations read."""
    var_terms, dist_terms, reg_terms = [], [], []
    for n in range(emb.shape[0]):
        ids = [int(i) for i in torch.unique(inst[n]) if i != 0]
        centres = []
        l_var = emb.new_zeros(())
        for i in ids:
            pixels = emb[n][:, inst[n] == i]  # E x N_c
            mu = pixels.mean(dim=1)
            centres.append(mu)
            inner = emb.new_zeros(())
            for k in range(pixels.shape[1]):
                inner = inner + torch.clamp(torch.norm(mu - pixels[:, k]) - delta_v, min=0) ** 2
            l_var = l_var + inner / pixels.shape[1]
        n_inst = len(ids)
        l_dist = emb.new_zeros(())
        for a in range(n_inst):
            for b in range(n_inst):
                if a != b:
                    d = torch.norm(centres[a] - centres[b])
                    l_dist = l_dist + torch.clamp(2 * delta_d - d, min=0) ** 2
        l_reg = sum((torch.norm(mu) for mu in centres), emb.new_zeros(()))
        var_terms.append(l_var / n_inst if n_inst else l_var)
        dist_terms.append(l_dist / (n_inst * (n_inst - 1)) if n_inst > 1 else l_dist)
        reg_terms.append(l_reg / n_inst if n_inst else l_reg)
    var = torch.stack(var_terms).mean()
    dist = torch.stack(dist_terms).mean()
    reg = torch.stack(reg_terms).mean()
    return alpha * var + beta * dist + gamma * reg, {"var": var, "dist": dist, "reg": reg}


def random_instances() -> torch.Tensor:
    ids = torch.tensor([0, 3, 7, 100, 2**20, 41])
    inst = ids[torch.randint(0, len(ids), (4, 10, 12))]
    inst[1] = 0  # an image without instances
    inst[2] = 0
    inst[2, 2:6, 3:9] = 7  # an image with exactly one instance
    return inst  # images 0 and 3 share ids: they must never mix


@pytest.mark.parametrize(
    "params", [{}, {"delta_v": 0.2, "delta_d": 0.8, "alpha": 0.7, "beta": 1.3, "gamma": 0.1}]
)
def test_matches_paper_transcription(params):
    emb = (torch.randn(4, 5, 10, 12, dtype=torch.float64) * 0.6).requires_grad_(True)
    inst = random_instances()
    loss_fn = DiscriminativeLoss(**params)
    full = {"delta_v": 0.5, "delta_d": 1.5, "alpha": 1.0, "beta": 1.0, "gamma": 0.001} | params
    expected, parts = paper_loss(emb, inst, **full)
    out = loss_fn(emb, inst, return_components=True)
    torch.testing.assert_close(out["loss"], expected)
    for key in ("var", "dist", "reg"):
        torch.testing.assert_close(out[key], parts[key])
        assert parts[key].item() > 0  # every term is active in this example
    assert loss_fn.last_components["dist"] == pytest.approx(parts["dist"].item())
    (grad,) = torch.autograd.grad(loss_fn(emb, inst), emb)
    (expected_grad,) = torch.autograd.grad(expected, emb)
    torch.testing.assert_close(grad, expected_grad)


def test_ids_are_arbitrary_and_images_never_mix():
    emb = torch.randn(2, 3, 6, 6)
    inst = torch.zeros(2, 6, 6, dtype=torch.long)
    inst[:, :3] = 5
    inst[:, 3:] = 9
    renamed = inst.clone()
    renamed[1][inst[1] == 5] = 1
    renamed[1][inst[1] == 9] = 2
    loss_fn = DiscriminativeLoss()
    torch.testing.assert_close(loss_fn(emb, inst), loss_fn(emb, renamed))
    torch.testing.assert_close(
        loss_fn(emb, inst), paper_loss(emb, inst, 0.5, 1.5, 1.0, 1.0, 0.001)[0]
    )


def test_spatial_coordinates_are_regularised_out_and_shift_invariant():
    """With coordinates, L_var and L_dist see embeddings + coordinates, L_reg the embeddings alone,
    so moving the coordinates' origin (a constant added to them) leaves the loss unchanged."""
    from seglab.instances.embedding import coordinate_channels

    emb = torch.randn(4, 3, 10, 12)
    inst = random_instances()
    coords = coordinate_channels(emb, 4.0)
    loss_fn = DiscriminativeLoss(gamma=0.1)
    out = loss_fn(emb, inst, coordinates=coords, return_components=True)
    _, summed = paper_loss(emb + coords, inst, 0.5, 1.5, 1.0, 1.0, 0.1)
    _, learned = paper_loss(emb, inst, 0.5, 1.5, 1.0, 1.0, 0.1)
    torch.testing.assert_close(out["var"], summed["var"])
    torch.testing.assert_close(out["dist"], summed["dist"])
    torch.testing.assert_close(out["reg"], learned["reg"])
    for shift in ([25.0, -4.0, 0.0], [-100.0, 3.0, 2.0]):
        moved = coords + torch.tensor(shift).view(3, 1, 1)
        torch.testing.assert_close(loss_fn(emb, inst, coordinates=moved), out["loss"])
    # adding the coordinates to the embeddings instead puts them into L_reg: not shift invariant
    assert not torch.allclose(loss_fn(emb + coords + 25.0, inst), loss_fn(emb + coords, inst))
    with pytest.raises(ValueError, match="coordinates"):
        loss_fn(emb, inst, coordinates=coords[:2])


def test_empty_batch_is_zero_with_gradient():
    emb = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = DiscriminativeLoss()(emb, torch.zeros(2, 5, 5, dtype=torch.long), return_components=True)
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_pulls_two_toy_instances_apart():
    torch.manual_seed(1)
    emb = torch.nn.Parameter(torch.randn(1, 2, 8, 8) * 0.05)
    inst = torch.zeros(1, 8, 8, dtype=torch.long)
    inst[0, :, :4] = 5
    inst[0, :, 4:] = 11
    loss_fn = DiscriminativeLoss(delta_v=0.5, delta_d=1.5)
    optimiser = torch.optim.Adam([emb], lr=0.1)
    start = loss_fn(emb, inst, return_components=True)
    assert start["dist"].item() > 8.0  # centres start almost together: (2 * 1.5)^2 = 9
    for _ in range(150):
        optimiser.zero_grad()
        loss_fn(emb, inst).backward()
        optimiser.step()
    end = loss_fn(emb, inst, return_components=True)
    assert end["dist"].item() < 1e-2
    assert end["var"].item() < 1e-3
    mu_a = emb[0][:, inst[0] == 5].mean(1)
    mu_b = emb[0][:, inst[0] == 11].mean(1)
    assert torch.norm(mu_a - mu_b).item() > 2 * 1.5 - 0.1


def test_bad_inputs_give_clear_errors():
    loss_fn = DiscriminativeLoss()
    with pytest.raises(ValueError, match="N x E x H x W"):
        loss_fn(torch.randn(4, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="N x H x W"):
        loss_fn(torch.randn(2, 4, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        loss_fn(torch.randn(2, 4, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="negative"):
        loss_fn(torch.randn(2, 4, 8, 8), -torch.ones(2, 8, 8, dtype=torch.long))
    with pytest.raises(ConfigError, match="delta_d"):
        DiscriminativeLoss(delta_v=2.0, delta_d=0.5)
