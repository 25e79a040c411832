"""Emails as identities: one spelling per person, so a look-alike never passes for someone else.

An email is NFKC-normalised (a full-width `ｏ` becomes `o`), trimmed and lower-cased; one that
still holds an invisible character (a zero-width space, a direction mark, a control character)
or any non-ASCII letter (a Cyrillic `о` looks like a Latin `o`) is refused rather than silently
stripped: the person who typed it learns what was wrong, and the log never records a name that
reads like another's.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import InputError

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]+")
_INVISIBLE = ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Mn", "Me")  # categories with no glyph


def looks_like_email(text: str) -> bool:
    """Whether `text` can be an email address (what the role lists hold; also what the audit
    log may record of a refused sign-in)."""
    return len(text) <= 254 and _EMAIL.fullmatch(text) is not None


def normalise_email(text: str) -> str:
    """The one spelling of an email: NFKC, trimmed, lower-case. InputError (what was found and
    the fix) for invisible or non-ASCII characters and for text that is not an email."""
    email = unicodedata.normalize("NFKC", text).strip()
    for char in email:
        if unicodedata.category(char) in _INVISIBLE or (char.isspace() and char != " "):
            raise InputError(
                "The email holds an invisible character.",
                found=f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})",
                fix="type the address again by hand instead of pasting it",
            )
    for char in email:
        if not char.isascii():
            raise InputError(
                "The email holds a character outside plain ASCII, which can look like another.",
                found=f"{char!r} (U+{ord(char):04X}, {unicodedata.name(char, 'unnamed')})",
                fix="use the plain ASCII address (an international domain in its xn-- form)",
            )
    email = email.lower()
    if not looks_like_email(email):
        raise InputError("This is not an email address.", fix="enter it as name@example.com")
    return email
