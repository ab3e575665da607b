"""convvit.data.datasets: where a batch of in-memory images is fetched, and on how many threads."""
import torch

from convvit.data.datasets import TensorImageDataset
from convvit.data.transforms import BatchEvalTransform


def test_a_batch_is_fetched_on_one_thread_in_one_place(monkeypatch):
    threads_seen = []

    class Recording(BatchEvalTransform):
        def __call__(self, x):
            threads_seen.append(torch.get_num_threads())
            return super().__call__(x)

    settings = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: settings.append(n) or real(n))
    before = torch.get_num_threads()
    try:
        real(2)
        images, labels = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4)
        transform = Recording(8, (0.5,), (0.25,))
        transform(images)  # the transform alone leaves the threads to its caller
        assert settings == [] and threads_seen == [2]
        data = TensorImageDataset(images, labels, 1, batch_transform=transform)
        batch = data.__getitems__([0, 2])
        assert len(batch) == 2 and batch[1][0].shape == (1, 8, 8) and int(batch[1][1]) == 2
        assert threads_seen == [2, 1] and settings == [1, 2] and torch.get_num_threads() == 2
    finally:
        real(before)
