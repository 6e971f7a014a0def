"""Tests of examples/adamml/datasets/: list files for Kinetics-Sounds, ActivityNet, folders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adamml"
sys.path.insert(0, str(EXAMPLE))

# Loaded under its own name: a plain `import datasets` would clash with Hugging Face's package.
_spec = importlib.util.spec_from_file_location(
    "adamml_datasets",
    EXAMPLE / "datasets" / "__init__.py",
    submodule_search_locations=[str(EXAMPLE / "datasets")],
)
DS = importlib.util.module_from_spec(_spec)
sys.modules["adamml_datasets"] = DS
_spec.loader.exec_module(DS)

from data import parse_list_file, read_classes  # noqa: E402

KS = DS.KINETICS_SOUNDS_CLASSES
HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` as the shell sees it: exit status, stdout, stderr."""
    try:
        code = DS.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# --------------------------------------------------------------------------------------------
# Kinetics-Sounds
# --------------------------------------------------------------------------------------------
@pytest.fixture
def kinetics(tmp_path: Path) -> Path:
    """Two Kinetics CSVs and clips in the three downloader layouts, one clip missing."""
    (tmp_path / "train.csv").write_text(
        HEADER
        + "bowling,abc-_defghi,10,20,train,0\n"  # label folder, underscores in the id
        + "playing bass guitar,bbbbbbbbbbb,1.0,11.0,train,0\n"  # folder with underscores
        + "abseiling,0347ZoDXyP0,95,105,train,0\n"  # not a Kinetics-Sounds class
        + "tickling,ccccccccccc,3,13,train,1\n"  # flat, id only
        + "tickling,ddddddddddd,3,13,train,0\n"  # missing
    )
    (tmp_path / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"  # no is_cc column
        + "singing,eeeeeeeeeee,0,10,val\n"
        + "singing,fffffffffff,5,15,test\n"
    )
    touch(
        tmp_path / "videos",
        "bowling/abc-_defghi_000010_000020.mp4",
        "playing_bass_guitar/bbbbbbbbbbb_000001_000011.mp4",
        "abseiling/0347ZoDXyP0_000095_000105.mp4",
        "ccccccccccc.mkv",
        "eeeeeeeeeee_000000_000010.webm",
        "eeeeeeeeeee_000000_000010.txt",  # not a video
    )
    return tmp_path


def kinetics_args(root: Path, *extra: str) -> list[str]:
    return [
        "kinetics-sounds",
        "--data-root",
        str(root / "videos"),
        "--annotations",
        str(root / "train.csv"),
        str(root / "validate.csv"),
        "--out",
        str(root / "lists"),
        *extra,
    ]


def test_kinetics_sounds_classes_are_the_31_the_authors_listed() -> None:
    assert len(KS) == 31 and len(set(KS)) == 31
    assert list(KS) == sorted(KS)
    assert {"playing bass guitar", "tapping pen", "shoveling snow", "tickling"} <= set(KS)


def test_kinetics_sounds_lists_hold_the_clips_of_the_31_classes_in_every_layout(
    kinetics: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *kinetics_args(kinetics))
    lists = kinetics / "lists"
    assert code == 0
    assert lines(lists / "classes.txt") == list(KS)
    index = {name: i for i, name in enumerate(KS)}
    assert lines(lists / "train.txt") == [
        f"bowling/abc-_defghi_000010_000020.mp4 {index['bowling']}",
        f"playing_bass_guitar/bbbbbbbbbbb_000001_000011.mp4 {index['playing bass guitar']}",
        f"ccccccccccc.mkv {index['tickling']}",
    ]
    assert lines(lists / "val.txt") == [f"eeeeeeeeeee_000000_000010.webm {index['singing']}"]
    assert "videos: train 3, val 1; classes: 31; missing clips: 1" in out


def test_kinetics_missing_clips_other_classes_and_test_rows_are_counted_and_listed(
    kinetics: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, *kinetics_args(kinetics))
    missing = lines(kinetics / "lists" / "missing.txt")
    assert missing == [f"train\tddddddddddd_000003_000013\t{kinetics / 'train.csv'}:6"]
    assert "rows of other classes 1" in out and "test rows 1" in out


def test_kinetics_sounds_classes_no_row_names_are_listed_as_unknown(
    kinetics: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, *kinetics_args(kinetics))
    unknown = lines(kinetics / "lists" / "unknown.txt")
    named = {"bowling", "playing bass guitar", "tickling", "singing"}
    assert [line.split("\t")[0] for line in unknown] == [c for c in KS if c not in named]
    assert f"unknown labels: {31 - len(named)}" in out


def test_a_clip_with_other_times_is_not_taken_for_the_annotated_one(tmp_path: Path) -> None:
    rows = [DS.KineticsRow("bowling", "aaaaaaaaaaa", 10, 20, "train", "a.csv:2")]
    built = DS.build_kinetics_sounds(rows, ["aaaaaaaaaaa_000030_000040.mp4"], KS)
    assert built.splits["train"] == [] and len(built.missing) == 1


def test_label_folders_with_spaces_make_csv_lists_the_example_parses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.csv").write_text(HEADER + "playing bass guitar,bbbbbbbbbbb,1,11,train,0\n")
    touch(tmp_path / "videos", "playing bass guitar/bbbbbbbbbbb_000001_000011.mp4")
    code, out, _ = run(
        capsys,
        "kinetics-sounds",
        "--data-root",
        tmp_path / "videos",
        "--annotations",
        tmp_path / "train.csv",
        "--out",
        tmp_path / "lists",
    )
    assert code == 0 and "train.csv" in out and not (tmp_path / "lists" / "train.txt").exists()
    classes = read_classes(tmp_path / "lists" / "classes.txt")
    records, errors = parse_list_file(tmp_path / "lists" / "train.csv", classes)
    assert errors == []
    assert [(r.path, r.labels) for r in records] == [
        ("playing bass guitar/bbbbbbbbbbb_000001_000011.mp4", (KS.index("playing bass guitar"),))
    ]


@pytest.mark.parametrize(
    ("content", "where", "says"),
    [
        ("a,b\n1,2\n", ":1:", "expected columns label,youtube_id,time_start,time_end,split"),
        (
            HEADER + "bowling,aaaaaaaaaaa,10,20,train,0\nbowling,x,ten,20,train,0\n",
            ":3:",
            "time_start/time_end must be numbers",
        ),
        (HEADER + "bowling,aaaaaaaaaaa,10,20,holdout,0\n", ":2:", "unknown split 'holdout'"),
        (HEADER + "bowling,aaaaaaaaaaa,10\n", ":2:", "shorter row"),
    ],
)
def test_a_bad_annotation_csv_stops_with_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, where: str, says: str
) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "k.csv").write_text(content)
    code, out, err = run(
        capsys,
        "kinetics-sounds",
        "--data-root",
        tmp_path / "videos",
        "--annotations",
        tmp_path / "k.csv",
    )
    message = err.strip().splitlines()[-1]
    assert code == 2 and out == ""
    assert message.startswith(f"{DS.cli.PROG}: error: {tmp_path / 'k.csv'}{where}")
    assert says in message and "Traceback" not in err
    assert list((tmp_path / "videos").iterdir()) == []


def test_a_missing_csv_or_data_root_is_named_in_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "videos").mkdir()
    code, _, err = run(
        capsys,
        "kinetics-sounds",
        "--data-root",
        tmp_path / "videos",
        "--annotations",
        tmp_path / "nope.csv",
    )
    assert code == 2 and f"{tmp_path / 'nope.csv'}: no such file" in err
    code, _, err = run(
        capsys,
        "kinetics-sounds",
        "--data-root",
        tmp_path / "absent",
        "--annotations",
        tmp_path / "nope.csv",
    )
    assert code == 2 and f"--data-root {tmp_path / 'absent'}: not a directory" in err


def test_no_training_clip_found_is_an_error_and_writes_nothing(
    kinetics: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (kinetics / "empty").mkdir()
    args = kinetics_args(kinetics)
    args[args.index("--data-root") + 1] = str(kinetics / "empty")
    code, _, err = run(capsys, *args)
    assert code == 2 and "no training video found" in err and "(5 missing)" in err
    assert not (kinetics / "lists").exists()


# --------------------------------------------------------------------------------------------
# ActivityNet
# --------------------------------------------------------------------------------------------
def activitynet_json(path: Path) -> Path:
    def video(subset: str, *labels: str) -> dict[str, object]:
        annotations = [{"label": label, "segment": [0.0, 1.0]} for label in labels]
        return {"subset": subset, "duration": 120.0, "annotations": annotations}

    database = {
        "aaaaaaaaaaa": video("training", "Zumba", "Archery", "Zumba"),
        "bbbbbbbbbbb": video("training", "Archery"),
        "ccccccccccc": video("validation", "Zumba"),
        "ddddddddddd": video("validation", "Archery"),  # missing
        "eeeeeeeeeee": video("testing"),
    }
    path.write_text(json.dumps({"version": "VERSION 1.3", "database": database}, indent=1))
    return path


@pytest.fixture
def activitynet(tmp_path: Path) -> Path:
    activitynet_json(tmp_path / "anet.json")
    touch(
        tmp_path / "videos",
        "v_aaaaaaaaaaa.mp4",
        "v_aaaaaaaaaaa.mkv",  # the .mp4 is preferred
        "train/bbbbbbbbbbb.webm",
        "v_ccccccccccc.mkv",
        "v_eeeeeeeeeee.mp4",
    )
    return tmp_path


def activitynet_args(root: Path, *extra: object) -> list[object]:
    return [
        "activitynet",
        "--data-root",
        root / "videos",
        "--json",
        root / "anet.json",
        "--out",
        root / "lists",
        *extra,
    ]


def test_activitynet_lists_every_label_of_a_video_once(
    activitynet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *activitynet_args(activitynet))
    lists = activitynet / "lists"
    assert code == 0
    assert lines(lists / "classes.txt") == ["Archery", "Zumba"]
    assert lines(lists / "train.txt") == ["v_aaaaaaaaaaa.mp4 0,1", "train/bbbbbbbbbbb.webm 0"]
    assert lines(lists / "val.txt") == ["v_ccccccccccc.mkv 1"]
    assert lines(lists / "missing.txt") == ["val\tddddddddddd"]
    assert lines(lists / "unknown.txt") == []
    assert "missing clips: 1" in out and "testing videos 1" in out


def test_activitynet_labels_outside_the_given_classes_are_listed_as_unknown(
    activitynet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (activitynet / "classes.txt").write_text("Zumba\nBowling\n")
    code, out, _ = run(
        capsys, *activitynet_args(activitynet, "--classes", activitynet / "classes.txt")
    )
    lists = activitynet / "lists"
    assert code == 0 and lines(lists / "classes.txt") == ["Zumba", "Bowling"]
    assert lines(lists / "train.txt") == ["v_aaaaaaaaaaa.mp4 0"]
    assert lines(lists / "val.txt") == ["v_ccccccccccc.mkv 0"]
    assert lines(lists / "unknown.txt") == ["Archery\tnot in --classes (3 videos)"]
    assert "videos without a known label 2" in out


def test_activitynet_multi_label_lists_are_parsed_by_the_example(
    activitynet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, *activitynet_args(activitynet))
    classes = read_classes(activitynet / "lists" / "classes.txt")
    records, errors = parse_list_file(activitynet / "lists" / "train.txt", classes)
    assert errors == []
    assert [(r.path, r.labels) for r in records] == [
        ("v_aaaaaaaaaaa.mp4", (0, 1)),
        ("train/bbbbbbbbbbb.webm", (0,)),
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"database": {\n  "a": {"subset": "training",}\n}}', "anet.json:2: not valid JSON"),
        ('{"taxonomy": []}', "anet.json: expected an object with a 'database' object"),
        ('{"database": {"x1": {"subset": "train"}}}', "video 'x1': 'subset' must be"),
        (
            '{"database": {"x1": {"subset": "training", "annotations": [{"segment": [0, 1]}]}}}',
            "video 'x1': 'annotations' must be a list of objects with a 'label'",
        ),
    ],
)
def test_a_bad_activitynet_json_stops_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "anet.json").write_text(content)
    code, out, err = run(capsys, *activitynet_args(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert says in err.strip().splitlines()[-1]
    assert not (tmp_path / "lists").exists()


# --------------------------------------------------------------------------------------------
# Class folders
# --------------------------------------------------------------------------------------------
def class_tree(root: Path, counts: dict[str, int]) -> Path:
    touch(root, *(f"{name}/{name}_{i:02d}.mp4" for name, n in counts.items() for i in range(n)))
    return root


def folder_lists(
    capsys: pytest.CaptureFixture[str], root: Path, out: Path, *extra: object
) -> tuple[list[str], list[str]]:
    code, _, err = run(capsys, "folders", "--data-root", root, "--out", out, *extra)
    assert code == 0, err
    return lines(out / "train.txt"), lines(out / "val.txt")


def test_folders_draw_the_same_split_for_the_same_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_tree(tmp_path / "videos", {"archery": 10, "diving": 8, "golf": 1})
    args = ("--val-fraction", "0.25", "--seed", "3")
    train, val = folder_lists(capsys, root, tmp_path / "a", *args)
    assert (train, val) == folder_lists(capsys, root, tmp_path / "b", *args)
    assert lines(tmp_path / "a" / "classes.txt") == ["archery", "diving", "golf"]
    per_class = {label: sum(line.endswith(f" {label}") for line in val) for label in "012"}
    assert per_class == {"0": round(10 * 0.25), "1": round(8 * 0.25), "2": 0}
    assert len(train) + len(val) == 19 and not set(train) & set(val)
    assert folder_lists(capsys, root, tmp_path / "c", "--val-fraction", "0.25", "--seed", "4") != (
        train,
        val,
    )


def test_adding_a_class_leaves_the_split_of_the_others_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_tree(tmp_path / "videos", {"diving": 10, "golf": 10})
    _, before = folder_lists(capsys, root, tmp_path / "a")
    class_tree(root, {"archery": 10})
    _, after = folder_lists(capsys, root, tmp_path / "b")
    paths = [line.split()[0] for line in after if not line.startswith("archery/")]
    assert paths == [line.split()[0] for line in before]


def test_folders_with_train_and_val_subfolders_keep_the_given_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "videos"
    touch(
        root,
        "train/golf/a.mp4",
        "train/golf/deeper/b.mp4",
        "train/diving/c.mkv",
        "val/golf/d.mp4",
        "val/polo/e.mp4",
        "val/loose.mp4",
        "notes.mp4",
    )
    code, out, _ = run(capsys, "folders", "--data-root", root)
    assert code == 0
    assert lines(root / "classes.txt") == ["diving", "golf"]
    assert lines(root / "train.txt") == [
        "train/diving/c.mkv 0",
        "train/golf/a.mp4 1",
        "train/golf/deeper/b.mp4 1",
    ]
    assert lines(root / "val.txt") == ["val/golf/d.mp4 1"]
    assert lines(root / "unknown.txt") == ["polo\tno folder of that name in train/ (1 videos)"]
    assert "files outside a class folder 2" in out
    code, _, err = run(capsys, "folders", "--data-root", root, "--val-fraction", "0.1")
    assert code == 2 and "already has train/ and val/ sub-folders" in err


def test_folders_match_given_class_names_with_underscores_for_spaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_tree(tmp_path / "videos", {"ice_hockey": 2, "curling": 2})
    (tmp_path / "classes.txt").write_text("ice hockey\nbiathlon\n")
    train, val = folder_lists(
        capsys,
        root,
        tmp_path / "out",
        "--val-fraction",
        "0.5",
        "--classes",
        tmp_path / "classes.txt",
    )
    assert [line.split()[1] for line in train + val] == ["0", "0"]
    assert lines(tmp_path / "out" / "unknown.txt") == ["curling\tnot in --classes (2 videos)"]


@pytest.mark.parametrize("fraction", ["1.0", "-0.1"])
def test_a_val_fraction_outside_zero_to_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fraction: str
) -> None:
    root = class_tree(tmp_path / "videos", {"golf": 2})
    code, _, err = run(capsys, "folders", "--data-root", root, "--val-fraction", fraction)
    assert code == 2 and "--val-fraction must be in [0, 1)" in err


def test_folder_lists_are_parsed_by_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_tree(tmp_path / "videos", {"archery": 4, "diving": 4})
    train, val = folder_lists(capsys, root, root)
    classes = read_classes(root / "classes.txt")
    for name, expected in (("train.txt", train), ("val.txt", val)):
        records, errors = parse_list_file(root / name, classes, strict=True)
        assert errors == [] and len(records) == len(expected)
        assert all(classes[r.labels[0]] == r.path.split("/")[0] for r in records)


# --------------------------------------------------------------------------------------------
# Writing, and the command as the docs run it
# --------------------------------------------------------------------------------------------
def test_bad_input_after_a_good_run_leaves_the_previous_lists_untouched(
    activitynet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, *activitynet_args(activitynet))
    lists = activitynet / "lists"
    before = {path.name: path.read_text() for path in lists.iterdir()}
    (activitynet / "anet.json").write_text('{"database": {"x": {"subset": "training"}, }}')
    code, _, _ = run(capsys, *activitynet_args(activitynet))
    assert code == 2
    assert {path.name: path.read_text() for path in lists.iterdir()} == before


def test_an_out_folder_that_cannot_be_written_is_named_in_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = class_tree(tmp_path / "videos", {"golf": 2})
    (tmp_path / "taken").write_text("a file, not a folder\n")
    code, out, err = run(capsys, "folders", "--data-root", root, "--out", tmp_path / "taken")
    assert code == 2 and out == "" and f"--out {tmp_path / 'taken'}: cannot write" in err


def test_the_folder_runs_as_the_docs_show_it_from_the_repository_root(tmp_path: Path) -> None:
    root = class_tree(tmp_path / "videos", {"archery": 2, "diving": 2})
    command = [sys.executable, "examples/adamml/datasets", "folders", "--data-root", str(root)]
    result = subprocess.run(
        command, cwd=EXAMPLE.parents[1], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "folders: wrote" in result.stdout
    assert lines(root / "classes.txt") == ["archery", "diving"]
    assert len(lines(root / "train.txt")) + len(lines(root / "val.txt")) == 4
