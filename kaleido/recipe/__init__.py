"""TOML recipes validated by pydantic: :func:`load_recipe` is the one entry point."""

from kaleido.recipe.load import Problem, Recipe, RecipeError, load_recipe

__all__ = ["Problem", "Recipe", "RecipeError", "load_recipe"]
