"""What every config key means, in one place: the pydantic field descriptions (so `nst schema`
and editors show them) and the docs' config table (docs/config.md) are both made from FIELD_DOCS.

Each entry is key -> (the docs' default column, the meaning). tests/unit/test_schema.py checks
that every config key has an entry, that each literal default matches the model's, and
that docs/config.md holds exactly config_table().
"""

from __future__ import annotations

FIELD_DOCS: dict[str, tuple[str, str]] = {
    "preset": (
        "`balanced`",
        "`fast`, `balanced` or `quality`: sets `scales`, `steps` and `optimizer.name` together (table below); any of those keys given explicitly wins",
    ),
    "content": (
        "— (required)",
        "content image (the photo); a folder or a glob (`photos/*.jpg`) makes a batch, one run per image",
    ),
    "style": (
        "— (required)",
        "style image (the painting), or a list of them to blend: paths or `{path, weight, scale}` (weights default 1 and are normalised; `scale` defaults to `style_scale`)",
    ),
    "masks": (
        "`{}`",
        "spatial control: mask image → index of a style in `style` (from 0), e.g. `{sky.png: 0, road.png: 1}`; a mask has the content's aspect ratio, white = this style, grey = partly, black = not; where no mask covers, only the content loss applies (Gram style loss only)",
    ),
    "output": (
        "`outputs/<config name>` (`outputs/<content>_<style>` without a config file)",
        "run folder",
    ),
    "resolution": (
        "`512`",
        "long side of the output in px; the content's aspect ratio is kept",
    ),
    "scales": (
        "`auto`",
        "coarse-to-fine: the long sides the run passes through, e.g. `[256, 512]`, increasing, each ≤ `resolution` (which is appended if the list stops short). `auto`: one scale up to 384 px, else from 256 px up to `resolution` in steps of about √2 (512 → 256, 362, 512)",
    ),
    "steps": (
        "`160` (from the preset)",
        "optimiser updates in all, shared among the scales so the last (full-size) one gets 70% of the time and the coarser ones equal parts of the rest (160 at 512 px → 60, 30, 70), or one number per scale, e.g. `[100, 40]`",
    ),
    "style_scale": (
        "`1.0`",
        "style image long side = scale × `style_scale`, aspect kept (never squashed to the content's shape)",
    ),
    "style_resize": (
        "`long_side`",
        "`long_side` (as above) or `content_shape`: the style is squashed to the content's exact shape (the seed recipe's way; `style_scale` is then unused)",
    ),
    "upsample": (
        "`plain`",
        "how each finer scale starts: `plain` upsamples the result so far (bicubic); `detail` also adds the content's detail at the new size (the band the coarser image could not hold), so the finer scale starts sharp",
    ),
    "color": (
        "`style`",
        "`style`: the palette follows the painting; `luminance`: style transfer on luminance only, then the content's colours are put back; `histogram`: the style image's colours are first matched to the content's (mean and covariance in RGB)",
    ),
    "average": (
        "`0.0`",
        "`0.9`, say: frames and the final image are an exponential moving average of the iterates (weight of the past), smoother, mostly useful with Adam; `0` saves the iterate itself",
    ),
    "layers.content": (
        "`{relu4_2: 1.0}`",
        "VGG layer → weight for the content loss (may be `{}` for pure texture synthesis)",
    ),
    "layers.style": (
        "`{relu1_1: 1, relu2_1: 1, relu3_1: 1, relu4_1: 1, relu5_1: 1}`",
        "VGG layer → weight for the style loss (at least one); with `loss.normalize` unit weights are balanced",
    ),
    "weights.content": (
        "`1.0`",
        "α",
    ),
    "weights.style": (
        "`2.0`",
        "β",
    ),
    "weights.tv": (
        "`0.0`",
        "γ, total-variation smoothing",
    ),
    "loss.normalize": (
        "`true`",
        "every term a relative error (see the formulas), so one β means the same on any weights, size and pair; `false`: the raw means, comparable with other tools",
    ),
    "loss.gram": (
        "`mean`",
        "`mean`: G = F·Fᵀ/(C·H·W); `sum`: G = F·Fᵀ with the layer loss divided by C·H·W (the seed recipe). With `normalize` both give the same run",
    ),
    "loss.style": (
        "`gram`",
        "the style statistic: `gram` (Gram matrices, Gatys et al.) or `wasserstein` (each layer's feature mean and covariance, matched by the 2-Wasserstein distance between Gaussians; see Creative control)",
    ),
    "optimizer.name": (
        "`lbfgs`",
        "`lbfgs` (projected L-BFGS, see below) or `adam`",
    ),
    "optimizer.lr": (
        "`null` = 1.0 for lbfgs, 0.02 for adam",
        "step size (the image is RGB in [0, 1]); an explicit lr far outside the optimiser's range is warned about",
    ),
    "optimizer.history_size": (
        "`20`",
        "L-BFGS curvature pairs kept",
    ),
    "optimizer.trust_region": (
        "`0.05`",
        "L-BFGS: largest RMS pixel change in one step (`null`: none)",
    ),
    "optimizer.precondition": (
        "`auto`",
        "L-BFGS: `pyramid` starts each step's curvature model from one that moves coarse "
        "structure first (coarse grids boosted by their cell size), `light-pyramid` from the "
        "same with a quarter of the boost, `none` from the identity; `auto`: `pyramid` on the "
        "first scale, `light-pyramid` on later ones, `none` with `masks` (see How the "
        "defaults were chosen)",
    ),
    "optimizer.carry_history": (
        "`true`",
        "L-BFGS, coarse to fine: each finer scale starts with the previous scale's curvature "
        "pairs, resized to it, instead of none (no change to the pictures; 2% lower raw "
        "objective at 448 px, see Performance)",
    ),
    "save_every": (
        "`50`",
        "a frame (and a checkpoint) every this many steps; larger than `steps` means only step 0",
    ),
    "checkpoint": (
        "`compact`",
        "`compact` (~60 B/px, resume within 2%), `exact` (~520 B/px, resume exact) or `off`",
    ),
    "precision": (
        "`auto`",
        "`auto` (`tf32` on CUDA, `bf16` on a CPU with bfloat16 matrix units (Intel AMX), `fp32` elsewhere; config.yaml's `run:` says which), `tf32` (float32, TensorFloat-32 matmuls/convolutions on CUDA; plain float32 elsewhere), `fp32` (strict float32), `bf16` (the network in bfloat16, as under autocast; Grams and losses stay float32)",
    ),
    "memory": (
        "`normal`",
        "`low` recomputes each VGG block's interior in the backward pass (activation checkpointing) instead of storing it, and keeps the L-BFGS history in float16, and memory freed by a step goes back to the system rather than being kept for the next: less memory, more time (see Performance)",
    ),
    "compile": (
        "`false`",
        "`true` runs the network through `torch.compile` (a one-off warm-up per size, shown in the summary)",
    ),
    "init": (
        "`content`",
        "`content`, `noise` (seeded uniform noise), `style`, or an image path (at the first scale)",
    ),
    "seed": (
        "`0`",
        "random seed; same config + seed on CPU gives the same image",
    ),
    "device": (
        "`auto`",
        "`auto` (cuda, then mps, then cpu), `cpu`, `cuda`, `cuda:N`, `mps`",
    ),
    "model.weights": (
        "`caffe`",
        "`caffe`, `torchvision`, `random`, or a path to a `.pth` state dict",
    ),
    "model.pooling": (
        "`max`",
        "`max` or `avg`",
    ),
    "model.preprocessing": (
        "`auto`",
        "`auto`, `caffe`, `torchvision`, or `symmetric` ((x − 0.5)/0.5, the seed recipe's): the input convention of the weights",
    ),
}


def config_table() -> str:
    """The docs' config reference table (markdown)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows += [
        f"| `{key}` | {default} | {meaning} |" for key, (default, meaning) in FIELD_DOCS.items()
    ]
    return "\n".join(rows)


def plain(text: str) -> str:
    """Markdown backticks dropped, for the JSON Schema descriptions editors show."""
    return text.replace("`", "")
