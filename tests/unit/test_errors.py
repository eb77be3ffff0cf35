import inspect

import memvault
from memvault import errors


def error_classes() -> list[type[errors.MemvaultError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MemvaultError)
    ]


def test_every_error_has_a_distinct_code() -> None:
    codes = [cls.code for cls in error_classes()]
    assert len(codes) == len(set(codes)), codes


def test_every_error_is_exported_and_has_an_http_status() -> None:
    for cls in error_classes():
        assert cls.__name__ in memvault.__all__
        assert 400 <= cls.http_status < 600


def test_no_error_shadows_a_builtin() -> None:
    import builtins

    for cls in error_classes():
        assert not hasattr(builtins, cls.__name__), cls.__name__


def test_public_surface_matches_all() -> None:
    for name in memvault.__all__:
        assert hasattr(memvault, name), name
