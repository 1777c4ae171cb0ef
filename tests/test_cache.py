"""In-process LRU cache and content digests."""

import numpy as np

from sklearn_arb.backbone._cache import LRUCache, array_digests


def test_lru_evicts_least_recently_used_by_count():
    cache = LRUCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_lru_evicts_by_bytes_and_skips_values_over_the_bound():
    cache = LRUCache(max_items=100, max_bytes=3 * 80)
    for key in range(4):
        cache.put(key, np.zeros(10))  # 80 bytes each
    assert cache.get(0) is None
    assert all(cache.get(key) is not None for key in (1, 2, 3))
    cache.put("big", np.zeros(31))
    assert cache.get("big") is None and cache.get(3) is not None
    # replacing a key does not count its old value twice
    for _ in range(5):
        cache.put(3, np.zeros(10))
    assert all(cache.get(key) is not None for key in (1, 2, 3))
    cache.clear()
    assert cache.get(1) is None


def test_digests_follow_content_dtype_and_shape_not_layout():
    image = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)
    changed = image.copy()
    changed[5, 7, 2] = np.nextafter(changed[5, 7, 2], 2)  # one ulp of one pixel
    fortran = np.asfortranarray(image)
    digests = array_digests(
        [image, fortran, changed, image.astype(np.float64), image.reshape(8, 6, 3)]
    )
    assert digests[0] == digests[1]
    assert len(set(digests[:1] + digests[2:])) == 4
    assert array_digests([image.copy()]) == digests[:1]
