"""How Rglasso's penalties are chosen, measured on planted problems: density of S against the planted corruption.

For each dimension ``p`` (``n = 5p`` samples) and corruption level (fraction of off-diagonal pairs of ``M`` given a
gross error, :func:`anomaly.synthetic.make_rglasso_problem`), three ways of choosing ``(ρ, λ)`` are compared:

* ``fixed 0.2 / 1.0``: the earlier fixed defaults (chosen on p = 100, 1 % corruption);
* ``auto``: :func:`anomaly.rglasso.default_penalties` (ρ from Banerjee et al. 2008 for this p and n, λ = κ/ρ), the
  estimator's default;
* ``CV``: :class:`anomaly.rglasso_cv.RobustGraphicalLassoCV` (3-fold held-out Gaussian likelihood on its default
  3 x 3 grid; the corruption, which lives in the covariance, is added to every fold's covariance). It costs 28 fits,
  so it runs only for ``--cv-dims`` and the first ``--cv-seeds`` seeds.

Reported: ``dens`` = non-zero off-diagonal pairs of S / planted pairs (1 = as many as planted), entry ROC-AUC and F1
of ``|S|`` against the planted entries, support F1 of Θ, the chosen penalties and the fit time. Writes its section of
``docs/benchmarks.md`` (``--doc``; ``--doc ''`` only prints).

    OMP_NUM_THREADS=1 nice python benchmarks/rglasso_selection.py            # about 4 CPU minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anomaly.metrics import entry_detection_metrics, support_metrics  # noqa: E402
from anomaly.rglasso import RobustGraphicalLasso  # noqa: E402
from anomaly.rglasso_cv import RobustGraphicalLassoCV  # noqa: E402
from anomaly.synthetic import make_rglasso_problem  # noqa: E402
from forge.docsection import command_line, machine_line, mean_std, publish_section  # noqa: E402

SECTION = "anomaly-rglasso-selection"
TITLE = "### anomaly: Rglasso selection"
METHODS = ("fixed 0.2 / 1.0", "auto", "CV")


def fit_one(method: str, prob) -> tuple[dict, float]:
    """Fit with one selection ``method``; returns the metrics and the seconds taken."""
    n = prob.X.shape[0]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-convergence is counted in the table instead
        if method == "CV":
            model = RobustGraphicalLassoCV().fit(prob.X, covariance_offset=prob.S)
        elif method == "auto":
            model = RobustGraphicalLasso().fit(covariance=prob.M, n_samples=n)
        else:
            model = RobustGraphicalLasso(rho=0.2, lam=1.0).fit(covariance=prob.M)
    seconds = time.perf_counter() - t
    det = entry_detection_metrics(model.outliers_, prob.mask)
    return {"dens": det["density_ratio"], "auc": det["auc"], "ef1": det["f1"],
            "sf1": support_metrics(model.precision_sparse_, prob.precision)["f1"],
            "rho": float(model.rho_), "lam": float(model.lam_), "converged": float(model.converged_)}, seconds


def run(args) -> dict:
    """``{(p, level, method): {metric: [values over seeds]}}``."""
    dims = [int(v) for v in args.dims.split(",")]
    levels = [float(v) for v in args.corruptions.split(",")]
    cv_dims = {int(v) for v in args.cv_dims.split(",") if v}
    out: dict = {}
    for p in dims:
        for level in levels:
            for seed in range(args.seeds):
                prob = make_rglasso_problem(p=p, seed=seed, corruption=level)
                for method in METHODS:
                    if method == "CV" and (p not in cv_dims or seed >= args.cv_seeds):
                        continue
                    metrics, seconds = fit_one(method, prob)
                    row = out.setdefault((p, level, method), {})
                    for k, v in {**metrics, "time": seconds}.items():
                        row.setdefault(k, []).append(v)
                done = [m for m in METHODS if len(out.get((p, level, m), {}).get("dens", [])) > seed]
                print(f"[selection] p={p} corruption={level:g} seed={seed}: " + ", ".join(
                    f"{m} dens {out[(p, level, m)]['dens'][-1]:.2f} auc {out[(p, level, m)]['auc'][-1]:.3f}"
                    for m in done), flush=True)
    return out


def render(results: dict, args, wall: float) -> str:
    """The markdown section: conditions, table, and the summary computed from it."""
    lines = [
        f"Planted problems (`make_rglasso_problem`: sparse Θ*, about 2 neighbours per variable, n = 5p samples, "
        f"corrupted pairs get ±U(0.5, 1)·sqrt(M_ii M_jj)); {args.seeds} seeds per cell, CV on the first "
        f"{args.cv_seeds} at p ∈ {{{args.cv_dims}}} only (28 fits each). dens = nnz(S) / planted pairs; entry AUC / "
        f"F1 = |S| against the planted entries; support F1 = off-diagonal support of Θ; ρ, λ on the correlation "
        f"scale; conv = fraction of fits that met the stopping rule. {machine_line()}; wall time {wall:.0f} s.",
        "",
        "| p | corruption | method | ρ | λ | dens | entry AUC | entry F1 | support F1 | conv | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (p, level, method), r in results.items():
        lines.append(f"| {p} | {100 * level:g} % | {method} | {np.mean(r['rho']):.3f} | {np.mean(r['lam']):.2f} | "
                     f"{mean_std(r['dens'], '.2f')} | {mean_std(r['auc'])} | {mean_std(r['ef1'])} | "
                     f"{mean_std(r['sf1'])} | "
                     f"{np.mean(r['converged']):.2f} | {np.mean(r['time']):.2f} |")
    lines.append("")
    for method in METHODS:
        rows = [r for (_, _, m), r in results.items() if m == method]
        if not rows:
            continue
        dens = [np.mean(r["dens"]) for r in rows]
        auc = [np.mean(r["auc"]) for r in rows]
        lines.append(f"* {method}: dens {min(dens):.2f}–{max(dens):.2f} over {len(rows)} cells "
                     f"(mean {np.mean(dens):.2f}), entry AUC {min(auc):.3f}–{max(auc):.3f} (mean {np.mean(auc):.3f}).")
    lines += ["", command_line("benchmarks/rglasso_selection.py", args.argv)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="50,100,200")
    ap.add_argument("--corruptions", default="0.005,0.01,0.02", help="fractions of off-diagonal pairs corrupted")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--cv-dims", default="50,100", help="dimensions at which CV runs ('' for none)")
    ap.add_argument("--cv-seeds", type=int, default=1, help="CV on the first this many seeds")
    ap.add_argument("--doc", default="docs/benchmarks.md", help="write the section here ('' to only print)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.seeds < 1 or args.cv_seeds < 0:
        ap.error(f"--seeds must be >= 1 and --cv-seeds >= 0, got {args.seeds}, {args.cv_seeds}")
    t0 = time.perf_counter()
    body = render(run(args), args, time.perf_counter() - t0)
    publish_section(args.doc, SECTION, body, title=TITLE)


if __name__ == "__main__":
    main()
