"""Recipes: binding/evaluation recipes and the offline world builder (recipes.world)."""
