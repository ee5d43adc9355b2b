"""Protocol facts every variant shares: character classes, limits, statuses; and
responses.py, the one reader of what a server sends back."""
from .chars import TCHAR, PCHAR, QUERY_CHAR, FIELD_VCHAR, HEXDIG, UNRESERVED, SUB_DELIMS  # noqa: F401
from .limits import Limits, DEFAULT_LIMITS  # noqa: F401
from .status import REASONS, error_response, status_line  # noqa: F401
