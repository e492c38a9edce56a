"""Every command, given hostile arguments a user might type, ends with exit code 2 and one line on
stderr that names the problem (and no traceback); nothing is written where it must not be."""

import pytest

from onefield.app.cli import main

TINY = ["--hashgrid.n-levels", "4", "--hashgrid.log2-table-size", "10", "--hashgrid.max-resolution", "32",
        "--trainer.target-samples", "2048", "--trainer.render-steps", "64", "--trainer.grid-resolution", "16"]


@pytest.fixture(scope="module")
def runs(shapes_scene, tmp_path_factory):
    """A trained tiny run, one without held-out views, and a text file posing as a mesh."""
    root = tmp_path_factory.mktemp("hostile")
    out = root / "runs"
    assert main(["fit", str(shapes_scene.root), "--steps", "3", "--out", str(out), *TINY]) == 0
    assert main(["fit", str(shapes_scene.root), "--steps", "3", "--out", str(out / "none"), "--eval-split", "none",
                 *TINY]) == 0
    run = next((out / shapes_scene.root.name / "hashgrid").iterdir())
    no_held_out = next((out / "none" / shapes_scene.root.name / "hashgrid").iterdir())
    (root / "a-file.txt").write_text("not a folder, not a mesh\n")
    (root / "empty").mkdir()
    full = root / "full"
    full.mkdir()
    (full / "something").write_text("x")
    return {"run": str(run), "none": str(no_held_out), "file": str(root / "a-file.txt"), "empty": str(root / "empty"),
            "full": str(full), "nowhere": str(root / "nowhere"), "data": str(shapes_scene.root), "root": root}


CASES = [  # (arguments with {placeholders}, words the one-line message must contain)
    ("fit {nowhere}", "no such folder"),
    ("fit {empty}", "no known dataset here"),
    ("fit {file}", "no known dataset here"),
    ("fit {data} --out {file}", "is a file"),
    ("fit {data} --steps -5", "steps and minutes must be positive"),
    ("fit {data} --minutes 0", "steps and minutes must be positive"),
    ("fit {data} --downscale 0", "downscale"),
    ("fit {data} --device cuda", "no CUDA GPU"),
    ("fit {data} --field voxels", "unknown field backend 'voxels'"),
    ("fit {data} --cascades 99", "cascades must be"),
    ("fit {data} --aabb 1 0 0 0 1 1", "aabb must be min xyz then max xyz"),
    ("fit {data} --near 3 --far 2", "far (2.0) must exceed near (3.0)"),
    ("fit {data} --eval-split bogus", "bogus"),
    ("fit {data} --format llff", "poses_bounds.npy"),
    ("fit {data} --trainer.loss l3", "loss must be 'huber' or 'mse'"),
    ("fit {data} --trainer.grid-resolution 0", "resolution must be in [1, 1024]"),
    ("fit {data} --hashgrid.sh-degree 9", "sh_degree must be 1..4"),
    ("resume {nowhere}", "not a run folder"),
    ("resume {file}", "not a run folder"),
    ("resume {empty}", "not a run folder"),
    ("resume {run} --steps 0", "steps and minutes must be positive"),
    ("eval {nowhere}", "not a run folder"),
    ("eval {none}", "no held-out views"),
    ("render {nowhere}", "not a run folder"),
    ("render {run} --frames 0", "frames"),
    ("render {run} --fps 0", "fps"),
    ("compare {nowhere}", "not a run folder"),
    ("compare {run} --size 0", "image size"),
    ("gui --workspace {file}", "is a file, not a folder"),
    ("gui --trainings 0", "--trainings must be at least 1"),
    ("slim {run} --rank 4", "has no rank to slim"),
    ("slim {nowhere} --rank 4", "not a run folder"),
    ("export mesh {nowhere}", "not a run folder"),
    ("export mesh {run} --method blobs", "--method must be one of"),
    ("export mesh {run} --resolution 1", "--resolution must be in [16, 1024]"),
    ("export mesh {run} --texture 64 --format ply", "a texture atlas needs --format obj or glb"),
    ("export mesh {run} --level 1e9", "outside the sampled density range"),
    ("export pointcloud {run} --stride 0", "stride"),
    ("eval-mesh {nowhere} --gt {file}", "no such mesh file"),
    ("eval-mesh {file} --gt {file}", "not a readable mesh"),
    ("mesh-scene {nowhere} {root}/scene", "no such mesh file"),
    ("mesh-scene {file} {root}/scene", "not a readable mesh"),
    ("process {nowhere} --out {root}/dataset", "nowhere"),
    ("process {empty} --out {root}/dataset", "no photos"),
    ("process {data} --out {full}", "not empty"),
    ("demo --size 0 --out {root}/demo", "size"),
    ("demo --minutes -1 --out {root}/demo", "steps and minutes must be positive"),
    ("demo --views 0 --out {root}/demo", "views"),
]


@pytest.mark.parametrize("args, words", CASES, ids=[c[0].split(" {")[0] + ": " + c[1] for c in CASES])
def test_hostile_arguments_give_one_line_and_exit_code_2(args, words, runs, capsys):
    argv = [a.format(**runs) for a in args.split()]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    command = argv[0] if argv[0] != "export" else f"export {argv[1]}"
    assert err.startswith(f"onefield {command}: "), err
    assert "\n" not in err and "Traceback" not in err, err
    assert words in err, err
