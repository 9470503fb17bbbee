from django.core.exceptions import ValidationError


class MaximumLengthValidator:
    """Refuses very long passwords, which would make hashing a denial-of-service lever."""

    def __init__(self, max_length: int = 4096) -> None:
        self.max_length = max_length

    def validate(self, password: str, user: object = None) -> None:
        if len(password) > self.max_length:
            raise ValidationError(
                f"This password is too long. It must contain at most {self.max_length} characters.",
                code="password_too_long",
            )

    def get_help_text(self) -> str:
        return f"Your password must contain at most {self.max_length} characters."
