from job_worker import fields, models


class Partner(models.Model):
    _inherit = "res.partner"

    tag_ids = fields.Many2many("crm.tag", string="Tags")
    lead_ids = fields.One2many("crm.lead", "partner_id")
    reminders_sent = fields.Integer()

    def send_reminder(self):
        for partner in self:
            partner.reminders_sent += 1
        return len(self)


class Tag(models.Model):
    _name = "crm.tag"
    _order = "name"

    name = fields.Char(required=True)


class Lead(models.Model):
    _name = "crm.lead"
    _description = "Lead"
    _order = "priority desc, id"

    name = fields.Char(required=True)
    description = fields.Text()
    priority = fields.Integer(default=1, index=True)
    expected_revenue = fields.Float()
    won = fields.Boolean()
    deadline = fields.Date()
    contacted_at = fields.Datetime()
    stage = fields.Selection(
        [("new", "New"), ("qualified", "Qualified"), ("won", "Won")], default="new"
    )
    data = fields.Json()
    partner_id = fields.Many2one("res.partner", ondelete="cascade")
