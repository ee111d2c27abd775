"""diarizen-lab checkpoints: the offline store of pretrained assets (WavLM, speaker embedding, PLDA).

The store is a folder: --checkpoint-dir, else $DIARIZEN_LAB_CHECKPOINTS, else ./checkpoints. Nothing is ever
downloaded: an asset name resolves, first match wins, to

  1. its entry in <store>/manifest.toml:
         [assets.wavlm-base-plus]
         path = "wavlm/WavLM-Base+.pt"   # relative to the manifest, or absolute
         kind = "wavlm"                  # optional label
         sha256 = "<64 hex digits>"      # optional, checked by `verify`
     (a cache tree path may add revision = "<ref or commit>" and subfolder = "plda"; a folder asset may give
     sha256 = { "file" = "<digest>", ... });
  2. <store>/<name>, <store>/<name>.pt or <store>/<name>.safetensors: a file, a model folder (config.json +
     model.safetensors or pytorch_model.bin; pyannote's config.yaml + pytorch_model.bin; a PLDA folder with
     xvec_transform.npz + plda.npz), or a Hugging Face cache tree;
  3. for wavlm-base, wavlm-base-plus, wavlm-large, wespeaker-resnet34-lm, plda (or any id org/name[/subfolder]):
     the cache tree models--org--name in <store>, <store>/hub or the Hugging Face cache ($HF_HUB_CACHE).

A released DiariZen model (config.toml + pytorch_model.bin, optional plda/; e.g. the cache tree of
BUT-FIT/diarizen-wavlm-base-s80-md) is listed as kind diarizen-released and can be passed by name to
`diarize -c`, `train --set finetune.init_from=...` and `checkpoints import SRC DST` (our model file, same outputs).

To fill a store on a machine with network access: `hf download microsoft/wavlm-base-plus --cache-dir STORE`
(likewise pyannote/wespeaker-voxceleb-resnet34-LM and pyannote/speaker-diarization-community-1 for the PLDA),
then move STORE with `cp -a` or `rsync -a`: `scp -r` turns the snapshot symlinks into copies (still usable,
twice the size; `checkpoints repair` re-links them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diarizen_lab.errors import DiarizenLabError

STORE_HELP = "the store (default: $DIARIZEN_LAB_CHECKPOINTS, else ./checkpoints)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, verify, repair and convert the pretrained assets of the offline store; import models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="show each asset name: kind, size, where it resolves")
    listing.add_argument("--checkpoint-dir", type=Path, default=None, help=STORE_HELP)

    verify = actions.add_parser(
        "verify",
        help="check every manifest entry and cache tree; exit 1 if a file is wrong",
        description="Check every file of every manifest entry, asset and Hugging Face cache tree under DIR: "
        "missing, broken symlink (blob absent), zero-byte, hash mismatch, unreadable (torch, safetensors, npz, "
        "JSON, YAML), unsafe pickle, link out of its cache tree (not followed). Prints one line per file with the fix; exit status 1 if anything is wrong.",
    )
    verify.add_argument("directory", metavar="DIR", nargs="?", type=Path, help=STORE_HELP)
    verify.add_argument(
        "--hash", action="store_true",
        help="hash every cache blob against its name, also those over 512 MiB (by default only smaller ones)",
    )

    repair = actions.add_parser(
        "repair",
        help="re-link dereferenced cache copies, finish complete downloads; never deletes data",
        description="Repair the Hugging Face cache trees under DIR where a hash proves it safe: rename "
        "blobs/<hash>.incomplete that hash to <hash>; turn plain snapshot files (left by scp -r) whose hash "
        "names a blob back into symlinks to it. Broken symlinks whose blob exists nowhere are reported with "
        "their fix. Exit status 1 if such a problem remains.",
    )
    repair.add_argument("directory", metavar="DIR", type=Path, help="folder holding the cache trees")
    repair.add_argument(
        "--materialize", action="store_true",
        help="replace snapshot symlinks by hard links to their blobs (copies where hard links fail)",
    )
    repair.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")

    convert = actions.add_parser(
        "convert",
        help="convert a WavLM checkpoint (fairseq, Hugging Face, ...) to diarizen_lab's format",
    )
    convert.add_argument("source", metavar="SRC", help="a WavLM checkpoint file or folder, or an asset name")
    convert.add_argument("destination", metavar="DST", type=Path, help="the file to write")
    convert.add_argument("--checkpoint-dir", type=Path, default=None, help="the store that resolves SRC")
    convert.add_argument("--force", action="store_true", help="overwrite DST if it exists")

    imports = actions.add_parser(
        "import",
        help="write a segmentation model (a released DiariZen folder or hub asset, ...) as our model.pt",
        description="Write the segmentation model SRC as diarizen_lab's self-describing model file DST "
        "(architecture + weights): SRC is a released DiariZen folder (config.toml + pytorch_model.bin), a store "
        "asset name such as a Hugging Face cache tree BUT-FIT/diarizen-*, or our own model.pt / checkpoint / "
        "experiment directory. DST computes exactly what SRC computes. A released model's pipeline settings "
        "([inference.args], [clustering.args], plda/) stay in its folder: pass the folder to `diarize -c` to use "
        "them.",
    )
    imports.add_argument("source", metavar="SRC", help="released folder, asset name, or our model file / dir")
    imports.add_argument("destination", metavar="DST", type=Path, help="the model.pt to write")
    imports.add_argument("--checkpoint-dir", type=Path, default=None, help="the store that resolves SRC")
    imports.add_argument("--force", action="store_true", help="overwrite DST if it exists")

    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    actions = {"list": _list, "verify": _verify, "repair": _repair, "convert": _convert, "import": _import}
    return actions[args.action](args)


def _size(num_bytes: int) -> str:
    value, unit = float(num_bytes), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{num_bytes} B" if unit == "B" else f"{value:.1f} {unit}"


def _list(args: argparse.Namespace) -> int:
    from diarizen_lab.store import AssetNotFoundError, BrokenAssetError, CheckpointStore

    store = CheckpointStore(args.checkpoint_dir)
    manifest = "manifest.toml" if store.manifest_path.is_file() else "no manifest"
    print(f"checkpoint store: {store.root} ({manifest})")
    rows = []
    for name in store.names():
        try:
            asset = store.find(name)
        except BrokenAssetError as error:
            rows.append((name, "-", "-", "broken", f"{error.searched[0]} (run `checkpoints verify`)"))
        except AssetNotFoundError:
            rows.append((name, "-", "-", "missing", "-"))
        else:
            rows.append((name, asset.kind, _size(asset.size()), asset.source, str(asset.path)))
    width = max(len(row[0]) for row in [("NAME",), *rows]) + 2
    for name, kind, size, source, path in [("NAME", "KIND", "SIZE", "SOURCE", "PATH"), *rows]:
        print(f"{name:<{width}}{kind:<18}{size:>10}  {source:<10}{path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from diarizen_lab.store import default_checkpoint_dir, verify_store

    root = (args.directory or default_checkpoint_dir()).absolute()
    if not root.is_dir():
        raise DiarizenLabError(f"{root}: no such checkpoint folder (pass DIR or --checkpoint-dir)")
    sections = verify_store(root, hash_files=args.hash)
    print(f"checkpoint store: {root}")
    for section in sections:
        print(section.title)
        for check in section.checks:
            print(f"  {check.format(section.base)}")
    checks = [check for section in sections for check in section.checks]
    problems = [problem for section in sections for problem in section.problems]
    if not checks:
        print(f"nothing to verify: no manifest entry, asset or Hugging Face cache tree in {root}")
        return 1
    print(f"{len(checks)} file(s) checked: {len(checks) - len(problems)} ok, {len(problems)} problem(s)")
    return 1 if problems else 0


def _repair(args: argparse.Namespace) -> int:
    from diarizen_lab.store import repair_tree

    root = args.directory.absolute()
    if not root.is_dir():
        raise DiarizenLabError(f"{root}: no such folder")
    actions = repair_tree(root, materialize=args.materialize, dry_run=args.dry_run)
    for action in actions:
        print(action.format(root))
    changed = sum(action.changed for action in actions)
    unrepaired = sum(action.action == "unrepaired" for action in actions)
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {changed} file(s); {unrepaired} problem(s) need a new copy; nothing was deleted")
    return 1 if unrepaired else 0


def _convert(args: argparse.Namespace) -> int:
    from diarizen_lab.store import resolve_asset
    from diarizen_lab.models.wavlm.formats import convert_wavlm

    if args.destination.exists() and not args.force:
        raise DiarizenLabError(f"{args.destination} exists (pass --force to overwrite it)")
    source = resolve_asset(args.source, args.checkpoint_dir)
    config = convert_wavlm(source, args.destination)
    print(f"wrote {args.destination}: WavLM with {len(config.num_heads)} layers, converted from {source}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from diarizen_lab.models import load_model, locate_model
    from diarizen_lab.models.io import save_model

    if args.destination.exists() and not args.force:
        raise DiarizenLabError(f"{args.destination} exists (pass --force to overwrite it)")
    source = locate_model(args.source, args.checkpoint_dir)
    model = load_model(source, checkpoint_dir=args.checkpoint_dir)
    save_model(args.destination, model, {"imported_from": str(source)})
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"wrote {args.destination}: {type(model).__name__} ({parameters:,} parameters), imported from {source}")
    return 0
