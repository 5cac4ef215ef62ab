from __future__ import annotations

import numpy as np
import pytest

from taas.detector import geometry_id


def test_encode_decode_round_trip():
    rng = np.random.default_rng(3)
    fields = {"volume": rng.integers(0, 256, 100), "boundary": rng.integers(0, 256, 100),
              "layer": rng.integers(0, 4096, 100), "approach": rng.integers(0, 256, 100),
              "sensitive": rng.integers(0, 1 << 20, 100), "extra": rng.integers(0, 256, 100)}
    decoded = geometry_id.decode(geometry_id.encode(**fields))
    for name, values in fields.items():
        np.testing.assert_array_equal(decoded[name], values)


def test_known_acts_value():
    # volume 8, layer 2, sensitive 1: 8<<56 | 2<<36 | 1<<8 (ACTS GeometryIdentifier layout)
    key = geometry_id.encode(volume=8, layer=2, sensitive=1)
    assert int(key) == (8 << 56) | (2 << 36) | (1 << 8)


@pytest.mark.parametrize(("field", "value"), [("volume", 256), ("layer", -1), ("bogus", 1)])
def test_rejects_bad_fields(field, value):
    with pytest.raises(ValueError, match=field):
        geometry_id.encode(**{field: value})
