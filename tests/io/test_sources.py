"""Model sources: the ``KIND:PATH`` spec of ``--model`` (scoresde.io.sources)."""

from __future__ import annotations

import pytest

from scoresde.io.sources import MODEL_SOURCES, parse_model_spec


def test_parse_model_spec_names_the_known_sources():
    assert parse_model_spec("diffusers:/a/b") == ("diffusers", "/a/b")
    with pytest.raises(ValueError, match=r"unknown model source 'hf'.*diffusers:PATH, score_sde:PATH"):
        parse_model_spec("hf:x")
    with pytest.raises(ValueError, match="no path after 'score_sde:'"):
        parse_model_spec("score_sde:")
    assert MODEL_SOURCES == ("diffusers", "score_sde")
