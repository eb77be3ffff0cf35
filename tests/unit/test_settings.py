"""Settings: arguments beat MEMVAULT_* variables, which beat the TOML file, which beats defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvault import InvalidConfig, Memory, Settings


def test_defaults_and_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.load()
    assert settings.home == home and settings.embedder == "local" and settings.synchronous == "FULL"
    monkeypatch.setenv("MEMVAULT_EMBEDDER", "hash")
    monkeypatch.setenv("MEMVAULT_MAX_TEXT_BYTES", "100")
    settings = Settings.load()
    assert settings.embedder == "hash" and settings.max_text_bytes == 100
    assert Settings.load(embedder="openai").embedder == "openai"


def test_toml_file_below_environment(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "memvault.toml"
    config.write_text(
        '[memvault]\nembedder = "hash"\nnamespace = "from-file"\nmax_text_bytes = 64\n'
    )
    monkeypatch.setenv("MEMVAULT_CONFIG", str(config))
    monkeypatch.setenv("MEMVAULT_MAX_TEXT_BYTES", "128")
    settings = Settings.load()
    assert (settings.embedder, settings.namespace, settings.max_text_bytes) == (
        "hash",
        "from-file",
        128,
    )
    with Memory() as m:
        assert m.namespace == "from-file" and m.embedder.model_id.startswith("hash")


def test_toml_in_home_is_read(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "memvault.toml").write_text('embedder = "hash"\n')
    assert Settings.load().embedder == "hash"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"synchronous": "OFF"}, "synchronous"),
        ({"max_text_bytes": 0}, "max_text_bytes"),
        ({"namespace": "a/b"}, "namespace"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_settings_say_which(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        Settings.load(**overrides)
    assert fragment in str(caught.value)


def test_bad_master_key_and_bad_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidConfig):
        Memory(embedder="hash", master_key="not base64!")
    with pytest.raises(InvalidConfig):
        Memory(embedder="hash", master_key="c2hvcnQ=")  # base64 of 5 bytes
    bad = tmp_path / "bad.toml"
    bad.write_text("embedder = \n")
    monkeypatch.setenv("MEMVAULT_CONFIG", str(bad))
    with pytest.raises(InvalidConfig):
        Settings.load()


def test_from_config(home: Path) -> None:
    with Memory.from_config({"home": str(home), "embedder": "hash", "namespace": "cfg"}) as m:
        assert m.namespace == "cfg"
        m.add("configured", user_id="u")
