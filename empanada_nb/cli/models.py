"""``empanada-nb models``: the persistent model registry (list, info, register, export, import, remove)."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list, inspect, register, export, import or remove named models")
    act = p.add_subparsers(dest="action", required=True)
    act.add_parser("list", help="registered models and the published empanada models")
    i = act.add_parser("info", help="description, architecture, classes, norms, history and lineage of a model")
    i.add_argument("model", help="registered or published name, or a model file/folder/archive")
    i.add_argument("--json", action="store_true", help="print JSON")
    r = act.add_parser("register", help="copy a model into the registry under a name")
    r.add_argument("name")
    r.add_argument("source", help="model .pth, empanada .yaml, folder, .empanada archive or URL")
    r.add_argument("--sha256", help="expected checksum of the file or download")
    r.add_argument("--description", help="shown by `models info`")
    r.add_argument("--overwrite", action="store_true", help="replace an entry of the same name")
    e = act.add_parser("export", help="write a model to one archive file (.empanada)")
    e.add_argument("name")
    e.add_argument("path", help="archive file or folder")
    m = act.add_parser("import", help="register the model in an archive (.empanada from empanada-napari or export)")
    m.add_argument("archive")
    m.add_argument("--name", help="registry name (default: the archive's name)")
    m.add_argument("--overwrite", action="store_true")
    d = act.add_parser("remove", help="remove a registered model (or a published model's download)")
    d.add_argument("name")
    return p


def _print_info(info: dict) -> None:
    keys = ("name", "format", "architecture", "padding_factor", "source", "path")
    for k in keys:
        if info.get(k) not in (None, ""):
            print(f"{k:15s}{info[k]}")
    norms = info.get("norms") or {}
    if norms:
        print(f"{'norms':15s}mean {norms.get('mean')}, std {norms.get('std')}")
    classes = ", ".join(f"{c}: {v['name']} ({v['kind']})" for c, v in sorted(info.get("classes", {}).items()))
    print(f"{'classes':15s}{classes}")
    if info.get("min_area") is not None:
        print(f"{'min_area':15s}{info['min_area']} px (2D, learned from the training objects; the default of segment)")
    cal = info.get("calibration") or {}
    if "threshold" in cal:
        fit = f"threshold {cal['threshold']:.2f} folded into the bias" if cal.get("applied") else "kept 0.5"
        print(
            f"{'calibration':15s}{fit} (foreground IoU {cal.get('iou_at_0.5', float('nan')):.3f} at 0.5, "
            f"{cal.get('iou', float('nan')):.3f} at {cal['threshold']:.2f}; {cal.get('images')} {cal.get('source')})"
        )
    for k in ("history", "lineage"):
        if info.get(k):  # the dataset's files are a count here (registry summary); the card lists them
            print(f"{k:15s}{json.dumps(info[k], default=str)}")
    if info.get("description"):
        print(f"{'description':15s}{info['description']}")


def run(args) -> int:
    from .. import registry

    if args.action == "list":
        entries = registry.list_registered()
        print(f"registry: {registry.registry_dir()}")
        for name, e in entries.items():
            where = ("published, downloaded" if e["cached"] else "published") if e["published"] else "registered"
            desc = e["description"][:60] + ("..." if len(e["description"]) > 60 else "")
            print(f"{name:24s} {e['kind']:12s} {where:22s} {desc}")
    elif args.action == "info":
        info = registry.info(args.model)
        if args.json:
            print(json.dumps(info, indent=1, default=str))
        else:
            _print_info(info)
    elif args.action == "register":
        entry = registry.register(
            args.name, args.source, sha256=args.sha256, description=args.description, overwrite=args.overwrite
        )
        print(f"registered {args.name} ({entry['kind']}) in {registry.registry_dir()}")
    elif args.action == "export":
        print(f"exported {args.name} to {registry.export(args.name, args.path)}")
    elif args.action == "import":
        name = registry.import_archive(args.archive, args.name, overwrite=args.overwrite)
        print(f"imported {args.archive} as {name}")
    elif args.action == "remove":
        registry.remove(args.name)
        print(f"removed {args.name}")
    return 0
