import inspect

import imagefunnel
from imagefunnel import errors


def test_every_exported_name_exists() -> None:
    for name in imagefunnel.__all__:
        assert hasattr(imagefunnel, name), name


def test_every_error_class_is_exported() -> None:
    error_classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.ImageFunnelError)
    }
    assert error_classes <= set(imagefunnel.__all__)


def test_all_errors_share_one_root() -> None:
    for name in imagefunnel.__all__:
        obj = getattr(imagefunnel, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, errors.ImageFunnelError), name
