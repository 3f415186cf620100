"""Webhook secrets of the Standard Webhooks form: whsec_ + base64 (standard alphabet) of 24 to
64 bytes, whose decoded bytes are the HMAC key. The secrets issued before were whsec_ +
secrets.token_urlsafe(24), URL-safe base64 of 24 bytes: the ~64 % of them with a `-` or `_`
decode to another key (or none) in the reference library, so every secret not of the form gets
a fresh one (whsec_ + base64 of 32 random bytes); the others decode to their 24 bytes and stay.

Revision ID: 0006
Revises: 0005
"""

import base64
import binascii
import re
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BASE64 = re.compile(r"whsec_([A-Za-z0-9+/]+={0,2})")


def _valid(secret: str) -> bool:
    match = BASE64.fullmatch(secret)
    if not match:
        return False
    text = match.group(1)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64


def upgrade() -> None:
    conn = op.get_bind()
    stored = conn.execute(
        sa.text(
            "SELECT tenant_id, webhook_secret FROM tenant_settings "
            "WHERE webhook_secret IS NOT NULL FOR UPDATE"
        )
    ).all()
    for tenant_id, secret in stored:
        if not _valid(secret):
            fresh = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            conn.execute(
                sa.text(
                    "UPDATE tenant_settings SET webhook_secret = :s, updated_at = now() "
                    "WHERE tenant_id = :t"
                ),
                {"s": fresh, "t": tenant_id},
            )


def downgrade() -> None:
    # Nothing to undo: a rotated secret is of the form the old code signed with too.
    pass
