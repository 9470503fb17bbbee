"""A balance snapshot's tenant key loses its own index: snapshot_tenant_time_idx (tenant,
taken_at) leads with it. A first sync writes one snapshot per tenant, so one index less to
write for each."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_user_transfers"),
        ("tenants", "0009_lean_tenant_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="balancesnapshot",
            name="tenant",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.tenant"
            ),
        ),
    ]
