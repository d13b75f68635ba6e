"""Decode threads get one torch thread each and leave every other thread's count alone."""
import threading

import torch
from samplegen import make_image

from binder.embed.pipeline import Item, embed_items
from binder.embed.workers import decode_pool
from binder.model import BindingModel


def _count_in_new_thread() -> int:
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_decode_threads_run_torch_on_one_thread():
    torch.set_num_threads(2)
    with decode_pool(2) as pool:
        counts = list(pool.map(lambda _: torch.get_num_threads(), range(4)))
        during = torch.get_num_threads()
    assert counts == [1, 1, 1, 1]
    assert during == 2
    assert torch.get_num_threads() == 2
    assert _count_in_new_thread() == 2  # the process default is back for threads started later


def test_embedding_keeps_the_callers_thread_count(tmp_path):
    torch.set_num_threads(2)
    model = BindingModel.default().eval()
    folders = [tmp_path / str(i) for i in range(3)]
    for d in folders:
        d.mkdir()
    items = [Item(str(make_image(d, seed=i)), "image") for i, d in enumerate(folders)]
    batches = list(embed_items(model, items, batch_size=2, workers=2, progress=False))
    assert sum(len(b.items) for b in batches) == 3
    assert torch.get_num_threads() == 2
    assert _count_in_new_thread() == 2
