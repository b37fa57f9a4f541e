"""Restricted unpickling: arrays come back exactly; anything executable is refused."""

import os
import pickle

import numpy as np
import pytest

from imsyn.errors import InputError
from imsyn.safe_pickle import load_numpy_pickle, load_torch_archive


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickle_round_trip(tmp_path, protocol):
    tree = {
        "VGG16_0": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}},
        "lin": [np.float64(1.5), np.array([True, False])],
    }
    path = tmp_path / "w.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=protocol))
    got = load_numpy_pickle(path)
    np.testing.assert_array_equal(
        got["VGG16_0"]["Conv_0"]["kernel"], tree["VGG16_0"]["Conv_0"]["kernel"]
    )
    np.testing.assert_array_equal(got["lin"][1], tree["lin"][1])
    assert got["lin"][0] == 1.5


def test_numpy_pickle_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"w": _Evil(marker)}))
    with pytest.raises(InputError, match="refusing to unpickle posix.system|refusing to unpickle"):
        load_numpy_pickle(path)
    assert not marker.exists()


def test_not_a_pickle(tmp_path):
    path = tmp_path / "text.ckpt"
    path.write_text("hello")
    with pytest.raises(InputError, match="not a readable NumPy pickle"):
        load_numpy_pickle(path)


def test_torch_state_dict_and_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    state = {
        "a.weight": torch.randn(4, 3).t(),  # non-contiguous view
        "a.half": torch.randn(5).half(),
        "b.index": torch.arange(6).reshape(2, 3)[:, 1:],  # offset into the storage
        "c.scalar": torch.tensor(2.5),
    }
    path = tmp_path / "sd.pt"
    torch.save(state, path)
    got = load_torch_archive(path)
    assert set(got) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v.numpy())
        assert got[k].dtype == v.numpy().dtype

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x))

    script = torch.jit.script(Net().eval())
    spath = tmp_path / "net.pt"
    torch.jit.save(script, spath)
    got = load_torch_archive(spath)
    ref = {k: v.numpy() for k, v in script.state_dict().items()}
    assert set(ref) <= set(got)
    for k, v in ref.items():
        np.testing.assert_array_equal(got[k], v)


def test_torch_archive_refuses_code_and_damage(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Evil(marker)}, path)
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_torch_archive(path)
    assert not marker.exists()
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:600])
    with pytest.raises(InputError, match="cut.pt"):
        load_torch_archive(cut)
    with pytest.raises(InputError, match="no such weights file"):
        load_torch_archive(tmp_path / "absent.pt")
