"""Fixtures of the search page tests: one sample file per modality, a small real index of them
built with the untrained default model, and apps made by the real ``create_app`` over it.

The video is VP8 in WebM, which every Chromium plays; the two-stream video stays the samples'
MPEG-4 part 2, which Chromium does not decode, so the page's fallback (the poster frame and a
link to the file) is seen too."""
from __future__ import annotations

from pathlib import Path

import pytest
from samplegen import MAKERS
from samplegen_video import moving_blob

from binder.index.build import BuildOptions, build_index
from binder.model import BindingModel

QUIET = BuildOptions(batch_size=8, workers=1, progress=False)


def write_webm(path: Path, frames, fps: int = 8) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames as VP8 in WebM."""
    import av

    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def page_model() -> BindingModel:
    """The untrained default model: it holds every built-in modality (its vectors mean nothing)."""
    return BindingModel.default().eval()


@pytest.fixture(scope="session")
def page_index(tmp_path_factory, page_model) -> Path:
    """An index folder of one file of every modality the samples cover (ten files)."""
    root = tmp_path_factory.mktemp("page")
    files = root / "files"
    files.mkdir()
    for modality, make in MAKERS.items():
        if modality != "video":
            make(files, seed=0)
    write_webm(files / "clip0.webm", moving_blob())
    build_index(root / "idx", [files], model=page_model, options=QUIET)
    return root / "idx"


@pytest.fixture(scope="session")
def make_app(page_model):
    """``make_app(index, token=None)``: the real app over ``index``, sharing the one test model."""
    from binder.serve.app import create_app
    from binder.serve.config import ServeConfig

    def make(index: Path, token: str | None = None):
        return create_app(ServeConfig(index=index, token=token, quiet=True), model=page_model)
    return make
