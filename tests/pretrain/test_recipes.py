"""Named pretraining recipes: lookup, precedence of explicit options, clear errors."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from neurofeat.extract.methods import METHOD_NAMES  # noqa: E402
from neurofeat.extract.recipes import RECIPES, RecipeError, get_recipe, recipe_names  # noqa: E402
from neurofeat.runs.pretrain import OPTION_DEFAULTS, pretrain_config  # noqa: E402

pytestmark = pytest.mark.torch


def test_cpu_demo_covers_every_method_at_the_demo_scale():
    assert "cpu-demo" in recipe_names()
    assert set(RECIPES["cpu-demo"]) == set(METHOD_NAMES)
    for method in METHOD_NAMES:
        recipe = get_recipe("cpu-demo", method)
        assert recipe.method == method and recipe.name == "cpu-demo"
        assert (recipe.arch, recipe.widen_factor, recipe.input_size, recipe.spacing) == ("resnet10", 0.25, 32, 6.0)
        assert recipe.measured  # says what it reached (or that it was not measured)
        config = pretrain_config(method, recipe="cpu-demo")  # every entry builds a valid config
        assert config.recipe == "cpu-demo" and config.epochs == recipe.epochs and config.lr == recipe.lr
        assert config.eta == recipe.eta and dict(config.method_params) == dict(recipe.method_params)


def test_explicit_options_override_the_recipe_and_params_merge_key_by_key():
    recipe = get_recipe("cpu-demo", "simclr")
    config = pretrain_config("simclr", recipe="cpu-demo", epochs=recipe.epochs + 3, lr=0.5,
                             method_params={"temperature": 0.7})
    assert config.epochs == recipe.epochs + 3 and config.lr == 0.5
    params = dict(config.method_params)
    assert params["temperature"] == 0.7
    assert params["proj_hidden_dim"] == recipe.method_params["proj_hidden_dim"]
    assert config.encoder.arch == recipe.arch  # not given: from the recipe


def test_without_a_recipe_the_paper_defaults_apply():
    config = pretrain_config("dino")
    assert config.recipe is None
    assert (config.encoder.arch, config.epochs, config.lr, config.eta) == (
        OPTION_DEFAULTS["arch"], OPTION_DEFAULTS["epochs"], OPTION_DEFAULTS["lr"], OPTION_DEFAULTS["eta"])


def test_unknown_recipe_names_the_closest_and_the_known_ones():
    with pytest.raises(RecipeError, match=r"unknown --recipe 'cpu-dmo'\. Did you mean 'cpu-demo'\? Known recipes: "
                                          r"cpu-demo"):
        pretrain_config("simclr", recipe="cpu-dmo")
    with pytest.raises(RecipeError, match="has no settings for method 'swav'"):
        get_recipe("cpu-demo", "swav")


def test_cli_reports_a_bad_recipe_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from neurofeat.cli import app

    done = CliRunner().invoke(app, ["pretrain", "--method", "simclr", "--recipe", "gpu-big",
                                    "--store", str(tmp_path / "S"), "--no-progress"])
    assert done.exit_code != 0
    assert "unknown --recipe 'gpu-big'" in done.output and "cpu-demo" in done.output
    assert "Traceback" not in done.output
    assert not (tmp_path / "S").exists()
