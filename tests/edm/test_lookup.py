from __future__ import annotations

import numpy as np

from taas.edm.lookup import find_rows


def test_rows_and_missing_keys():
    table = np.array([40, 10, 30, 20], np.uint64)
    rows, found = find_rows(table, np.array([10, 20, 25, 40, 99], np.uint64))
    assert found.tolist() == [True, True, False, True, False]
    assert rows[found].tolist() == [1, 3, 0]
    assert np.all(table[rows[found]] == [10, 20, 40])


def test_empty_table_and_duplicates():
    rows, found = find_rows(np.zeros(0, np.int64), np.array([1, 2]))
    assert not found.any()
    assert rows.tolist() == [0, 0]
    rows, found = find_rows(np.array([5, 7, 5]), np.array([5]))
    assert found.all()
    assert rows.tolist() == [0]  # first of the duplicates
