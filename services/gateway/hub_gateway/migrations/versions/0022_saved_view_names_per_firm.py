"""Saved view names are unique per accountant within a firm: someone who left a firm and
joined another keeps their old firm's views out of sight, and may name a new one as an old
one was named.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_saved_views") as batch:
        batch.drop_constraint("uq_gateway_saved_views_name", type_="unique")
        batch.create_unique_constraint("uq_gateway_saved_views_firm_name", ["accountant_id", "firm_id", "name"])


def downgrade() -> None:
    # Two firms' views of one name would break the narrower constraint: the older firm's are
    # renamed with their firm's id, so nothing is lost.
    op.execute(
        "UPDATE gateway_saved_views SET name = substr(name, 1, 60) || ' (' || firm_id || ')'"
        " WHERE EXISTS (SELECT 1 FROM gateway_saved_views AS other"
        " WHERE other.accountant_id = gateway_saved_views.accountant_id"
        " AND other.name = gateway_saved_views.name AND other.created_at > gateway_saved_views.created_at)"
    )
    with op.batch_alter_table("gateway_saved_views") as batch:
        batch.drop_constraint("uq_gateway_saved_views_firm_name", type_="unique")
        batch.create_unique_constraint("uq_gateway_saved_views_name", ["accountant_id", "name"])
