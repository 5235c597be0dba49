"""iALS specifics: recency weights, exact solves (monotone objective), fold-in = training step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from models.data import EvalSet
from models.mf import IALSConfig, ImplicitALS, _solve_side, history_matrix, recency_weights
from models.mf_content import fit_interactions, regress_factors
from tests.models.conftest import random_loo


def test_recency_weights_halve_every_halflife() -> None:
    cfg = IALSConfig(recency_boost=1.0, recency_halflife=1.0)
    np.testing.assert_allclose(recency_weights(np.array([3, 1]), cfg), [1.25, 1.5, 2.0, 2.0])
    assert np.all(recency_weights(np.array([4]), IALSConfig(recency_boost=0.0)) == 1.0)


def test_repeated_item_keeps_its_most_recent_weight() -> None:
    cfg = IALSConfig(recency_boost=1.0, recency_halflife=1.0)
    matrix = history_matrix([np.array([2, 5, 2]), np.array([], np.int64)], 6, cfg)
    assert matrix.indptr.tolist() == [0, 2, 2]
    assert matrix.indices.tolist() == [2, 5] and matrix.weights.tolist() == [2.0, 1.5]
    transposed = matrix.transpose()
    assert transposed.indptr.tolist() == [0, 0, 0, 1, 1, 1, 2] and transposed.indices.tolist() == [
        0,
        0,
    ]


def test_out_of_range_items_are_rejected() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ImplicitALS(5, IALSConfig(factors=2)).user_vectors([np.array([7])])


@pytest.mark.parametrize("solver", ["exact", "cg"])
@pytest.mark.parametrize("boost", [0.0, 5.0])
def test_objective_decreases_every_epoch(boost: float, solver: str) -> None:
    # CG steps from the previous factors only lower each row's quadratic: still monotone.
    data = random_loo()
    cfg = IALSConfig(factors=6, iterations=6, recency_boost=boost, solver=solver)
    model = ImplicitALS(data.num_items, cfg)
    losses = [h["loss"] for h in model.fit(data.train)["history"]]
    assert all(later <= earlier * (1 + 1e-5) for earlier, later in itertools.pairwise(losses))


def test_fold_in_equals_the_training_user_step() -> None:
    data = random_loo()
    cfg = IALSConfig(factors=6, iterations=3, recency_boost=3.0, patience=10)
    model = ImplicitALS(data.num_items, cfg)
    model.fit(data.train)
    problem = model._problem(data.train)
    trained_users, _ = _solve_side(
        problem.user_plan, model.item_factors, problem.user_reg, cfg.unobserved_weight
    )
    torch.testing.assert_close(model.user_vectors(data.train), trained_users, rtol=1e-5, atol=1e-6)


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = random_loo()
    model = ImplicitALS(data.num_items, IALSConfig(factors=6, iterations=6, patience=1))
    report = model.fit(data.train, EvalSet(data.train, data.val))
    curve = [h["val_ndcg@10"] for h in report["history"]]
    assert report["best_val_ndcg@10"] == max(curve) == curve[report["best_epoch"] - 1]


def test_validation_via_fold_in_matches_the_aligned_shortcut() -> None:
    data = random_loo()
    aligned = EvalSet(data.train, data.val)
    shuffled = EvalSet(data.train[::-1], data.val[::-1])  # not row-aligned: forces fold-in
    reports = [
        ImplicitALS(data.num_items, IALSConfig(factors=6, iterations=3)).fit(data.train, valid)
        for valid in (aligned, shuffled)
    ]
    first, second = ([h["val_ndcg@10"] for h in r["history"]] for r in reports)
    assert first == pytest.approx(second, abs=1e-6)


def test_loss_from_the_solve_equals_the_objective() -> None:
    data = random_loo()
    cfg = IALSConfig(factors=5, iterations=2, recency_boost=2.0, patience=10)
    model = ImplicitALS(data.num_items, cfg)
    reported = model.fit(data.train)["history"][-1]["loss"]
    problem = model._problem(data.train)
    users = model.user_vectors(data.train)
    items, matrix = model.item_factors, problem.matrix
    scores = users @ items.T  # (U, I)
    rows, cols = matrix.row_of_entry(), matrix.indices
    fit = (torch.from_numpy(matrix.weights) * (scores[rows, cols] - 1) ** 2).sum()
    total = fit + cfg.unobserved_weight * scores.pow(2).sum()
    total += (problem.user_reg * users.pow(2).sum(1)).sum()
    total += (problem.item_reg * items.pow(2).sum(1)).sum()
    assert reported == pytest.approx(float(total) / len(cols), rel=1e-4)


def test_content_fit_to_interactions_solves_the_content_only_ials_loss() -> None:
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(6, 3))).float()  # (I, F)
    users = torch.from_numpy(rng.normal(size=(5, 2))).float()  # (U, D)
    rows, cols = torch.tensor([0, 0, 1, 2, 3, 4, 4]), torch.tensor([1, 3, 0, 5, 2, 1, 4])
    confidence = torch.tensor([1.0, 2.0, 1.0, 4.0, 1.0, 1.0, 3.0])
    start = torch.zeros(3, 2)
    fitted = fit_interactions(features, users, (rows, cols, confidence), 0.5, 0.1, start, 40)
    phi = torch.einsum("if,ud->uifd", features, users).reshape(5, 6, 6).double()  # s = phi.W
    observed = phi[rows, cols]  # (nnz, F * D)
    system = (confidence[:, None].double() * observed).T @ observed
    system += 0.5 * phi.reshape(-1, 6).T @ phi.reshape(-1, 6) + 0.1 * torch.eye(6).double()
    exact = torch.linalg.solve(system, (confidence[:, None].double() * observed).sum(0))
    torch.testing.assert_close(fitted, exact.reshape(3, 2).float(), rtol=1e-4, atol=1e-5)


def test_content_fit_to_factors_is_a_weighted_ridge_regression() -> None:
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(20, 4))).float()
    factors = torch.from_numpy(rng.normal(size=(20, 3))).float()
    weights = torch.from_numpy(rng.uniform(1, 2, size=20)).float()
    fitted = regress_factors(features, factors, weights, l2=0.5)
    x, w = features.double(), weights.double()
    system = x.T @ (w[:, None] * x) + 0.5 * float(w.mean()) * torch.eye(4).double()
    exact = torch.linalg.solve(system, x.T @ (w[:, None] * factors.double()))
    torch.testing.assert_close(fitted, exact.float())


def test_conjugate_gradients_reach_the_exact_row_solutions() -> None:
    data = random_loo()
    cfg = IALSConfig(factors=6, recency_boost=3.0)
    model = ImplicitALS(data.num_items, cfg)
    problem = model._problem(data.train)
    args = (problem.user_plan, model.item_factors, problem.user_reg, cfg.unobserved_weight)
    exact, exact_loss = _solve_side(*args)
    start = torch.zeros_like(exact)
    few, _ = _solve_side(*args, start=start, cg_steps=1)
    many, many_loss = _solve_side(*args, start=start, cg_steps=24)  # D = 6: converged
    torch.testing.assert_close(many, exact, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(many_loss, exact_loss, rtol=1e-3, atol=1e-4)
    assert float((few - exact).abs().max()) > 1e-3  # one step is not the solution


def test_auto_solver_switches_to_cg_above_its_size() -> None:
    assert IALSConfig(solver="auto", cg_rows=100).cg_for(100) == 0
    assert IALSConfig(solver="auto", cg_rows=100, cg_steps=4).cg_for(101) == 4
    assert IALSConfig(solver="exact", cg_rows=100).cg_for(10**6) == 0
    assert IALSConfig(solver="cg", cg_steps=2).cg_for(1) == 2
    with pytest.raises(ValueError, match="solver"):
        IALSConfig(solver="lu")
    with pytest.raises(ValueError, match="cg_steps"):
        IALSConfig(cg_steps=0)
