"""Regenerate the bundled sample folder (recipes/samples) that `make demo` embeds.

Every file is derived from real data shipped in registry packages: scikit-learn's handwritten
digits and espeak-ng's speech. Run from the repository root: ``python recipes/make_samples.py``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

OUT = Path(__file__).parent / "samples"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digit(n: int, size: int = 64) -> np.ndarray:
    """The first scikit-learn digit of class ``n`` upscaled to ``size`` px, in [0, 1]."""
    d = load_digits()
    img = d.images[np.flatnonzero(d.target == n)[0]] / 16.0
    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)) / 255.0


def speak(word: str, path: Path) -> None:
    if not shutil.which("espeak-ng"):
        sys.exit("espeak-ng is needed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), word], check=True)


def moving_digit(n: int, frames: int = 16, size: int = 64) -> np.ndarray:
    img = digit(n, 32)
    out = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        x, y = 4 + t * 28 // frames, 16
        out[t, y:y + 32, x:x + 32] = (img[..., None] * 255).astype(np.uint8)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    OUT.mkdir(exist_ok=True)
    Image.fromarray((digit(7) * 255).astype(np.uint8)).convert("RGB").save(OUT / "seven.png")
    (OUT / "caption_seven.txt").write_text("a handwritten seven\n")
    (OUT / "caption_three.txt").write_text("the digit three\n")
    relief = gaussian_filter(digit(3), 1.5)
    Image.fromarray((1500 - 400 * relief).astype(np.uint16)).save(OUT / "three.depth.png")
    heat = gaussian_filter(digit(5), 3.0)
    Image.fromarray((28000 + 8000 * heat).astype(np.uint16)).save(OUT / "five.thermal.png")
    speak("seven", OUT / "seven.wav")
    speak("three", OUT / "three.speech.wav")
    write_video(OUT / "moving_two.mp4", moving_digit(2))
    write_video(OUT / "moving_two.twostream.mp4", moving_digit(2))
    t = np.linspace(0, 10, 2000)
    imu = np.stack([np.sin(2 * t), np.cos(2 * t), 9.81 + 0.1 * np.sin(t), np.cos(t), np.sin(t), 0.1 * t])
    np.save(OUT / "circle.imu.npy", imu.astype(np.float32))
    series = np.stack([np.sin(t), np.sign(np.sin(3 * t))], axis=1)
    np.savetxt(OUT / "waves.csv", series, delimiter=",", header="sine,square", comments="", fmt="%.5f")
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")


if __name__ == "__main__":
    main()
