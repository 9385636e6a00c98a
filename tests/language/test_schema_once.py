"""The schema's derived facts (dispatch tables, condition validators) are worked out once per schema node."""

from runner.language import schema


def test_a_node_is_derived_once_and_an_equal_copy_on_its_own():
    calls = []

    def derive(node):
        calls.append(node)
        return len(calls)

    node, copy = {"type": "integer"}, {"type": "integer"}
    assert [schema._once(derive, node), schema._once(derive, node), schema._once(derive, copy)] == [1, 1, 2]
    assert calls == [node, copy] and calls[1] is copy


def test_a_condition_holds_as_jsonschema_says():
    condition = {"properties": {"type": {"const": "Dense"}}, "required": ["type"]}
    assert schema._holds(condition, {"type": "Dense"}) and not schema._holds(condition, {"type": "Conv2D"})
    assert schema._holds(condition, {"type": "Dense"})  # the second time from the kept validator
