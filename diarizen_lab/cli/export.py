"""``diarizen-lab export``: a segmentation model to ONNX, checked against torch with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Export a segmentation model (WavLM-Conformer, pruned ones included, or Fbank-Conformer) to ONNX with a
dynamic batch and length, for onnxruntime. The export is checked against torch on three random inputs of
other batch sizes and lengths than the traced one: when the log-probabilities differ by more than --tolerance,
the command fails and writes nothing. The file's metadata holds what `diarize -c model.onnx` needs
(architecture and its task: sample rate, chunk, speakers; frame geometry).

--int8 also writes <stem>.int8.onnx, onnxruntime's dynamic int8 quantization of the linear layers, and prints
its log-probability difference (no tolerance applies: check its DER, e.g. with benchmarks/bench_export.py).
Needs the [export] extra: pip install -e '.[export]'.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a segmentation model to ONNX (checked against torch)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--checkpoint", type=Path, required=True, help="model file, epoch dir or exp dir")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--int8", action="store_true", help="also write a dynamically quantized <stem>.int8.onnx")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest accepted |log-prob difference| (default 1e-4)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import InputError
    from diarizen_lab.export.onnx import TOLERANCE, export_onnx
    from diarizen_lab.models import load_model

    if args.output.suffix != ".onnx":
        raise InputError("the output file must end in .onnx", path=args.output)
    model = load_model(args.checkpoint)
    tolerance = TOLERANCE if args.tolerance is None else args.tolerance
    report = export_onnx(model, args.output, int8=args.int8, tolerance=tolerance)
    shapes = ", ".join("x".join(map(str, shape)) for shape in report.check_shapes)
    print(f"wrote {report.path} ({_megabytes(report.path)}); onnxruntime vs torch on inputs {shapes}: "
          f"max |log-prob difference| {report.max_difference:.2g} (tolerance {tolerance:g})")
    if report.int8_path is not None:
        print(f"wrote {report.int8_path} ({_megabytes(report.int8_path)}, int8 linear layers): "
              f"max |log-prob difference| {report.int8_max_difference:.2g}")
    return 0


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"
