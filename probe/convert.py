"""`python -m probe.convert`: an original MLCD RoPE2D checkpoint -> a Hugging Face directory.

The same three flags as DeepGlint's `convert_vit_bigG_14_rope2d_to_hf.py`:

    python -m probe.convert --checkpoint_path MLCD_ViT_bigG_14_336px_pytorch.pt \\
        --pytorch_dump_folder_path mlcd-vit-bigG-patch14-336 --image_size 336

The conversion and its verification are `probe.encoders.mlcd_convert`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from probe.core.errors import ProbeError
from probe.encoders.mlcd_convert import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m probe.convert",
        description="Convert an original MLCD RoPE2D checkpoint into a Hugging Face "
        "MLCDVisionModel directory (usable as encoder=hf encoder.model=DIR).",
    )
    parser.add_argument("--checkpoint_path", required=True, type=Path)
    parser.add_argument("--pytorch_dump_folder_path", required=True, type=Path)
    parser.add_argument("--image_size", required=True, type=int, help="224, 336 or 448")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = convert(
            args.checkpoint_path,
            args.pytorch_dump_folder_path,
            image_size=args.image_size,
            overwrite=args.overwrite,
        )
    except ProbeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"converted {args.checkpoint_path} -> {args.pytorch_dump_folder_path}: "
        f"width {report['hidden_size']}, depth {report['num_hidden_layers']}, "
        f"heads {report['num_attention_heads']}, MLP {report['intermediate_size']}, "
        f"patch {report['patch_size']}, {report['image_size']} px; verified "
        f"{report['tensors']} tensors bit-identical after reload, forward pass finite.\n"
        f"use it: python -m probe encoder=hf encoder.model={args.pytorch_dump_folder_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
