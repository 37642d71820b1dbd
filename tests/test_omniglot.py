"""Tests of metalearn_course.data.omniglot and .splits.

Most tests use a tiny fake Omniglot (3 + 2 characters) built in a temporary folder, so they run
in seconds without the real data. The tests at the end use the real archives of the course
mirror: $METALEARN_OMNIGLOT_MIRROR, else ../shared/data/omniglot next to the repository. They
are skipped, saying why, when neither exists.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import random
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from metalearn_course.data import (
    OmniglotNotAvailable,
    OmniglotSplit,
    OmniglotVerificationError,
    load_omniglot,
    omniglot,
)
from metalearn_course.data.omniglot import Archive, content_digest
from metalearn_course.data.splits import SPLITS, parse_class, split_classes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say where the data is; the settings of the machine running them must not leak in."""
    for name in ("METALEARN_OMNIGLOT_MIRROR", "METALEARN_DATA", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


# --- a tiny fake Omniglot ----------------------------------------------------------------------

TINY = {  # archive -> {alphabet: number of characters}
    "images_background": {"Alpha": 2, "Beta": 1},
    "images_evaluation": {"Gamma": 2},
}


def drawing(seed: int) -> bytes:
    """A 105×105 1-bit PNG like Omniglot's: white (1) paper, a black (0) 21×21 square of ink."""
    rng = random.Random(seed)
    img = Image.new("1", (105, 105), 1)
    x, y = rng.randrange(80), rng.randrange(80)
    ImageDraw.Draw(img).rectangle([x, y, x + 20, y + 20], fill=0)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in sorted(members.items()):
            zf.writestr(name, data)
    return path


class Tiny:
    """A fake mirror folder with both zips; ``members[name]`` are the files of each zip."""

    def __init__(self, tmp_path: Path) -> None:
        self.mirror, self.root = tmp_path / "mirror", tmp_path / "data"
        self.mirror.mkdir()
        self.members: dict[str, dict[str, bytes]] = {}
        self.archives: list[Archive] = []
        number = 0
        for name, alphabets in TINY.items():
            files = {}
            for alphabet, n_characters in alphabets.items():
                for c in range(1, n_characters + 1):
                    number += 1
                    for d in range(1, 21):
                        path = f"{name}/{alphabet}/character{c:02d}/{number:04d}_{d:02d}.png"
                        files[path] = drawing(100 * number + d)
            self.members[name] = files
            self.archives.append(
                Archive(
                    name, len(alphabets), sum(alphabets.values()), md5="0" * 32,
                    content_sha256=content_digest(files, files.__getitem__),
                )
            )  # fmt: skip
            write_zip(self.mirror / f"{name}.zip", files)

    def rewrite(self, name: str, files: dict[str, bytes]) -> None:
        write_zip(self.mirror / f"{name}.zip", files)

    @property
    def folder(self) -> Path:
        return self.root / "omniglot"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    data = Tiny(tmp_path)
    monkeypatch.setattr(omniglot, "ARCHIVES", tuple(data.archives))
    return data


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tiny: Tiny):
    """Serve the tiny mirror folder over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(tiny.mirror))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# --- loading, caching --------------------------------------------------------------------------


def test_load_from_mirror(tiny: Tiny) -> None:
    split = load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)
    assert isinstance(split, OmniglotSplit)
    assert split.classes == ["Alpha/character01", "Alpha/character02", "Beta/character01"]
    assert len(split) == 3 and split.name == "lake-background"
    assert split.images.dtype == torch.uint8 and split.images.shape == (3, 20, 28, 28)
    # Ink is 255 and paper 0: a 21×21 square on 105×105 paper covers 4% of the image.
    assert split.images.max() == 255 and split.images.min() == 0
    assert 0.03 < split.images.float().mean() / 255 < 0.05
    assert repr(split) == "OmniglotSplit(name='lake-background', images=uint8[3, 20, 28, 28])"

    evaluation = load_omniglot("lake-evaluation", tiny.root, mirror=tiny.mirror)
    assert evaluation.classes == ["Gamma/character01", "Gamma/character02"]
    # The layout on disk, as documented.
    assert (tiny.folder / "images_background" / "Alpha" / "character01" / "0001_01.png").is_file()
    assert (tiny.folder / "images_evaluation" / omniglot.STAMP_NAME).is_file()
    assert (tiny.folder / "omniglot_28.npz").is_file()
    assert not [p for p in tiny.folder.iterdir() if p.name.startswith(".")]  # no temporaries


def test_drawer_order_and_preprocessing(tiny: Tiny) -> None:
    split = load_omniglot("lake-evaluation", tiny.root, mirror=tiny.mirror)
    # Drawer 5 of Gamma/character02 (character number 5 overall) is the file 0005_05.png.
    png = Image.open(io.BytesIO(tiny.members["images_evaluation"][
        "images_evaluation/Gamma/character02/0005_05.png"
    ]))  # fmt: skip
    expected = 255 - np.asarray(png.convert("L").resize((28, 28), Image.Resampling.BOX))
    assert np.abs(split.images[1, 4].numpy().astype(int) - expected).max() <= 1


def test_cache_is_used_without_mirror_or_network(tiny: Tiny) -> None:
    first = load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)
    shutil.rmtree(tiny.mirror)
    for name in TINY:
        shutil.rmtree(tiny.folder / name)
    again = load_omniglot("lake-background", tiny.root, download=False)
    assert torch.equal(first.images, again.images) and first.classes == again.classes


def test_cache_is_rebuilt_from_the_extracted_folders(tiny: Tiny) -> None:
    first = load_omniglot("lake-evaluation", tiny.root, mirror=tiny.mirror)
    (tiny.folder / "omniglot_28.npz").write_bytes(b"garbage")  # damaged cache: rebuilt
    shutil.rmtree(tiny.mirror)
    again = load_omniglot("lake-evaluation", tiny.root, download=False)
    assert torch.equal(first.images, again.images)


def test_root_from_environment(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_DATA", str(tiny.root))
    monkeypatch.setenv("METALEARN_OMNIGLOT_MIRROR", str(tiny.mirror))
    assert len(load_omniglot("lake-evaluation")) == 2
    assert (tiny.folder / "omniglot_28.npz").is_file()


def test_an_existing_user_folder_is_used_not_overwritten(tiny: Tiny) -> None:
    tiny.folder.mkdir(parents=True)
    for name in TINY:  # the user extracted the zips by hand: no stamp, so checked file by file
        with zipfile.ZipFile(tiny.mirror / f"{name}.zip") as zf:
            zf.extractall(tiny.folder)
    assert len(load_omniglot("lake-background", tiny.root, download=False)) == 3

    (tiny.folder / "omniglot_28.npz").unlink()
    tampered = tiny.folder / "images_background" / "Beta" / "character01" / "0003_07.png"
    tampered.write_bytes(drawing(seed=12345))
    with pytest.raises(OmniglotVerificationError, match="Delete that folder"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)
    assert tampered.read_bytes() == drawing(seed=12345)  # the user's file is left alone


# --- verification ------------------------------------------------------------------------------


def test_missing_png_is_named(tiny: Tiny) -> None:
    files = dict(tiny.members["images_background"])
    del files["images_background/Alpha/character02/0002_13.png"]
    tiny.rewrite("images_background", files)
    with pytest.raises(OmniglotVerificationError, match="Alpha/character02 has 19"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)
    # verify=False cannot help: the array needs 20 drawings per character.
    with pytest.raises(OmniglotVerificationError, match="not a complete images_background"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror, verify=False)
    assert not (tiny.folder / "images_background").exists()  # nothing extracted


def test_wrong_counts_are_named(tiny: Tiny) -> None:
    files = dict(tiny.members["images_background"])
    for d in range(1, 21):
        files[f"images_background/Delta/character01/9999_{d:02d}.png"] = drawing(d)
    tiny.rewrite("images_background", files)
    with pytest.raises(OmniglotVerificationError, match=r"3 alphabets instead of 2.*4 characters"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)


def test_tampered_png_fails_the_digest_unless_verify_is_false(tiny: Tiny) -> None:
    files = dict(tiny.members["images_background"])
    files["images_background/Beta/character01/0003_07.png"] = drawing(seed=12345)
    tiny.rewrite("images_background", files)
    with pytest.raises(OmniglotVerificationError, match=r"differ(.|\n)*verify=False"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)
    assert not (tiny.folder / "images_background").exists()

    split = load_omniglot("lake-background", tiny.root, mirror=tiny.mirror, verify=False)
    assert len(split) == 3
    # The unverified result is not handed out to a later verify=True call: the extracted folder
    # is re-checked (no stamp), fails, and the error says how to fix it.
    with pytest.raises(OmniglotVerificationError, match="Delete that folder"):
        load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)


def test_a_zip_with_the_original_md5_is_accepted(tiny: Tiny, monkeypatch) -> None:
    files = dict(tiny.members["images_background"])
    files["images_background/Beta/character01/0003_07.png"] = drawing(seed=12345)
    tiny.rewrite("images_background", files)
    original_md5 = md5((tiny.mirror / "images_background.zip").read_bytes())
    background = dataclasses.replace(omniglot.ARCHIVES[0], md5=original_md5)
    monkeypatch.setattr(omniglot, "ARCHIVES", (background, *omniglot.ARCHIVES[1:]))
    assert len(load_omniglot("lake-background", tiny.root, mirror=tiny.mirror)) == 3
    stamp = (tiny.folder / "images_background" / omniglot.STAMP_NAME).read_text()
    assert stamp.startswith(f"md5 {original_md5}")


# --- when Omniglot is not available ------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_offline_without_copy_gives_one_clear_error(tiny: Tiny, monkeypatch) -> None:
    with pytest.raises(OmniglotNotAvailable) as error:
        load_omniglot("lake-background", tiny.root, download=False)
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    for hint in ("download=False", "mirror=", "METALEARN_OMNIGLOT_MIRROR", "images_evaluation.zip"):
        assert hint in message

    monkeypatch.setattr(omniglot, "URL_BASE", closed_port_url())
    with pytest.raises(OmniglotNotAvailable, match=r"refused(.|\n)*METALEARN_OMNIGLOT_MIRROR"):
        load_omniglot("lake-background", tiny.root)
    assert leftovers(tiny.folder) == []


def test_mirror_without_the_zips(tiny: Tiny, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OmniglotNotAvailable, match=r"has no images_background\.zip"):
        load_omniglot("lake-background", tiny.root, mirror=empty)
    monkeypatch.setenv("METALEARN_OMNIGLOT_MIRROR", str(empty))
    with pytest.raises(OmniglotNotAvailable, match=r"METALEARN_OMNIGLOT_MIRROR=.*has no"):
        load_omniglot("lake-background", tiny.root)


def test_download_from_a_local_server(tiny: Tiny, server: str, monkeypatch) -> None:
    monkeypatch.setattr(omniglot, "URL_BASE", server)
    # The tiny archives claim md5 "000…": a download that does not match it is refused.
    with pytest.raises(OmniglotVerificationError, match="verify=False"):
        load_omniglot("lake-background", tiny.root)
    assert leftovers(tiny.folder) == []  # the download was not kept

    real = {a.name: md5((tiny.mirror / f"{a.name}.zip").read_bytes()) for a in omniglot.ARCHIVES}
    archives = tuple(dataclasses.replace(a, md5=real[a.name]) for a in omniglot.ARCHIVES)
    monkeypatch.setattr(omniglot, "ARCHIVES", archives)
    assert len(load_omniglot("lake-evaluation", tiny.root)) == 2
    assert (tiny.folder / "images_background.zip").is_file()


# --- splits ------------------------------------------------------------------------------------


def test_unknown_split_lists_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown Omniglot split 'vinyals-training'") as error:
        load_omniglot("vinyals-training", tmp_path / "never-created")
    assert all(name in str(error.value) for name in SPLITS)
    assert not (tmp_path / "never-created").exists()


def test_parse_class() -> None:
    assert parse_class("Angelic/character01/rot270") == ("Angelic/character01", 3)
    assert parse_class("Japanese_(hiragana)/character13") == ("Japanese_(hiragana)/character13", 0)
    with pytest.raises(ValueError, match="rotDDD"):
        parse_class("Angelic/character01/rot045")


def test_vinyals_split_files_ship_with_the_package() -> None:
    sizes = {name: len(split_classes(name, [], [])) for name in SPLITS if "vinyals" in name}
    assert sizes == {
        "vinyals-train": 4112, "vinyals-val": 688, "vinyals-test": 1692, "vinyals-trainval": 4800,
    }  # fmt: skip


def test_torch_rot90_turns_the_same_way_as_pil_rotate() -> None:
    # prototypical-networks builds "rot090" with PIL's Image.rotate(90): counter-clockwise.
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20  # not symmetric in any way
    pil = np.asarray(Image.fromarray(pixels).rotate(90, expand=True))
    assert np.array_equal(torch.rot90(torch.from_numpy(pixels), 1, dims=(-2, -1)).numpy(), pil)


# --- the real Omniglot (course mirror) ---------------------------------------------------------

README_DIGESTS = {  # from the mirror's README.md
    "images_background": "deaa02f758afda524b3a045c7af40311f2d9ded3e2a39f715ece8470d474bc6a",
    "images_evaluation": "3d5e035f27423c362bf9a181af649b43cda64c1008f842177ddc5203269c901e",
}


def real_mirror_folder() -> Path | None:
    folder = Path(os.environ.get("METALEARN_OMNIGLOT_MIRROR") or REPO / "../shared/data/omniglot")
    return folder if (folder / "images_background.zip").is_file() else None


# Read at import, before the autouse fixture above clears the variable for each test.
REAL_MIRROR = real_mirror_folder()
needs_real_data = pytest.mark.skipif(
    REAL_MIRROR is None,
    reason="the Omniglot mirror is missing: set METALEARN_OMNIGLOT_MIRROR to a folder holding "
    "images_background.zip and images_evaluation.zip (or put it at ../shared/data/omniglot)",
)


@pytest.fixture(scope="session")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder in which the real Omniglot has been prepared once for the whole session."""
    root = tmp_path_factory.mktemp("omniglot-cache")
    start = time.perf_counter()
    load_omniglot("lake-background", root, mirror=REAL_MIRROR)
    seconds = time.perf_counter() - start
    print(f"first load of Omniglot (verify, extract, preprocess): {seconds:.1f} s")
    return root


@needs_real_data
@pytest.mark.parametrize("name", sorted(README_DIGESTS))
def test_mirror_content_digests_match_the_readme(name: str) -> None:
    with zipfile.ZipFile(REAL_MIRROR / f"{name}.zip") as zf:
        pngs = [m for m in zf.namelist() if m.endswith(".png")]
        assert content_digest(pngs, zf.read) == README_DIGESTS[name]
    assert {a.name: a.content_sha256 for a in omniglot.ARCHIVES} == README_DIGESTS


@needs_real_data
@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("vinyals-train", 4112), ("vinyals-val", 688), ("vinyals-test", 1692),
        ("vinyals-trainval", 4800), ("lake-background", 964), ("lake-evaluation", 659),
    ],
)  # fmt: skip
def test_real_splits(real_root: Path, name: str, size: int) -> None:
    split = load_omniglot(name, real_root, download=False)
    assert len(split) == size and split.images.shape == (size, 20, 28, 28)
    assert split.images.dtype == torch.uint8
    assert 5 < split.images.float().mean() < 60  # mostly paper (0) with some ink (255)
    if name.startswith("vinyals"):
        assert split.classes == split_classes(name, [], [])  # the order of the split file
    else:
        assert split.classes == sorted(split.classes)


@needs_real_data
def test_real_rotations(real_root: Path) -> None:
    split = load_omniglot("vinyals-train", real_root, download=False)
    index = {name: i for i, name in enumerate(split.classes)}
    base = split.images[index["Angelic/character01/rot000"]]
    for k, degrees in enumerate(["000", "090", "180", "270"]):
        rotated = split.images[index[f"Angelic/character01/rot{degrees}"]]
        assert torch.equal(rotated, torch.rot90(base, k, dims=(-2, -1)))
    assert not torch.equal(base, split.images[index["Angelic/character01/rot090"]])


@needs_real_data
def test_vinyals_splits_partition_all_rotated_characters(real_root: Path) -> None:
    lake = [load_omniglot(n, real_root, download=False).classes for n in SPLITS if "lake" in n]
    characters = lake[0] + lake[1]
    assert len(set(characters)) == 1623
    trainval = split_classes("vinyals-trainval", [], [])
    test = split_classes("vinyals-test", [], [])
    assert not set(trainval) & set(test)
    everything = {f"{c}/rot{d}" for c in characters for d in ("000", "090", "180", "270")}
    assert set(trainval) | set(test) == everything


def test_vinyals_splits_share_no_character_and_one_alphabet() -> None:
    """The split is by character; alphabets are separate too, except Gurmukhi (the docstring of
    metalearn_course.data.splits, and the book's reproducibility appendix, say so)."""
    parts = {n: split_classes(n, [], []) for n in ("vinyals-train", "vinyals-val", "vinyals-test")}
    characters = {n: {parse_class(c)[0] for c in classes} for n, classes in parts.items()}
    alphabets = {n: {c.split("/")[0] for c in chars} for n, chars in characters.items()}
    assert [len(characters[n]) for n in parts] == [1028, 172, 423]
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not characters[a] & characters[b], (a, b)
            expected = {"Gurmukhi"} if {a, b} == {"vinyals-train", "vinyals-test"} else set()
            assert alphabets[a] & alphabets[b] == expected, (a, b)


@needs_real_data
def test_later_loads_are_fast(real_root: Path) -> None:
    start = time.perf_counter()
    load_omniglot("vinyals-trainval", real_root, download=False)
    assert time.perf_counter() - start < 2.0


def test_upright_drops_the_rotated_classes() -> None:
    classes = [f"A/character0{i}/rot{d:03d}" for i in (1, 2) for d in (0, 90, 180, 270)]
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 20, 28, 28)
    split = OmniglotSplit(images, classes, "vinyals-toy")
    upright = split.upright()
    assert upright.classes == ["A/character01/rot000", "A/character02/rot000"]
    assert upright.images[:, 0, 0, 0].tolist() == [0, 4] and upright.name == "vinyals-toy-upright"
    lake = OmniglotSplit(images[:2], ["A/character01", "A/character02"], "lake-toy")
    assert lake.upright() is lake  # no rotated copies to drop
