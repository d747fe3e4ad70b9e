"""Template parameters are a pydantic model per template: parsed, bounded, named in every error."""

from __future__ import annotations

import pytest

from testbed.templates import TemplateError, get_template, list_templates


def test_cli_strings_become_typed_values_over_the_defaults():
    assert get_template("smoke").resolve({"epochs": "7", "lr": "0.5"}) == {"epochs": 7, "lr": 0.5, "seed": 0}
    resolved = get_template("validate").resolve({"model": "m", "version": 3})
    assert resolved["version"] == "3" and resolved["alias"] == "champion"


@pytest.mark.parametrize(
    ("template", "raw", "needle"),
    [
        (
            "smoke",
            {"epochs": "many"},
            "template 'smoke': param 'epochs': Input should be a valid integer, unable to parse string as an integer (got 'many')",
        ),
        (
            "smoke",
            {"epochs": 2.5},
            "param 'epochs': Input should be a valid integer, got a number with a fractional part",
        ),
        ("smoke", {"epochs": True}, "param 'epochs': a boolean is not a number (got True)"),
        ("smoke", {"epochs": 0}, "param 'epochs': Input should be greater than or equal to 1 (got 0)"),
        ("smoke", {"epochs": 1001}, "param 'epochs': Input should be less than or equal to 1000 (got 1001)"),
        ("smoke", {"nope": 1}, "param 'nope': is not a known key (its params: epochs, lr, seed)"),
        ("power-forecast", {"source": "hydro"}, "param 'source': Input should be 'solar' or 'wind' (got 'hydro')"),
        ("validate", {}, "template 'validate': param 'model': is required but missing"),
    ],
)
def test_a_bad_param_names_the_param_the_value_and_the_reason(template, raw, needle):
    with pytest.raises(TemplateError) as err:
        get_template(template).resolve(raw)
    assert needle in str(err.value)


def test_every_problem_is_reported_in_one_line():
    with pytest.raises(TemplateError) as err:
        get_template("smoke").resolve({"epochs": 0, "lr": "-1"})
    assert str(err.value) == (
        "template 'smoke': param 'epochs': Input should be greater than or equal to 1 (got 0); "
        "param 'lr': Input should be greater than or equal to 0 (got '-1')"
    )


def test_the_listing_keeps_its_shape_and_every_default_passes_its_own_model():
    for template in list_templates():
        shown = template.model_dump(mode="json")
        assert set(shown) == {"name", "kind", "industry", "description", "module", "params", "max_runtime_seconds"}
        for param in shown["params"]:
            assert set(param) == {"name", "type", "default", "help", "choices", "minimum", "maximum"}
        required = {p.name: "x" for p in template.params if p.default is None}
        resolved = template.resolve(required)
        assert resolved == {p.name: p.default if p.default is not None else "x" for p in template.params}


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(TemplateError, match="unknown template 'nope'; known: smoke, "):
        get_template("nope")
