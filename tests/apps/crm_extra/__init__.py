"""An application that extends crm: model extensions, list mixins and super() chains."""

DEPENDS = ["crm"]

from . import models  # noqa: E402, F401
