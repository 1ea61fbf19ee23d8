import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """In-process tests run single-threaded like the scripts (--torch-threads 1): small nets are slower on more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
