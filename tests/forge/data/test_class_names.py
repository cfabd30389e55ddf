import pytest

from forge.data.class_names import class_indices


def test_names_and_indices_mix():
    assert class_indices(["cat", 0, "sofa"], ["person", "cat", "sofa"], str) == [1, 0, 2]


@pytest.mark.parametrize("names", [["person"], None])
def test_unknown_name_uses_the_callers_message(names):
    with pytest.raises(ValueError, match="^Who: 'dog' missing$"):
        class_indices(["dog"], names, lambda c: f"Who: {c!r} missing")
