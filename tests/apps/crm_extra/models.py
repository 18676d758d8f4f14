from job_worker import fields, models


class Partner(models.Model):
    _inherit = "res.partner"

    vip = fields.Boolean()
    email = fields.Char(index=True)  # redefined: keeps its other options, gains an index

    def send_reminder(self):
        sent = super().send_reminder()
        self.filtered("vip").write({"vip_reminders": 1})
        return sent + 100

    def describe(self):
        return ["crm_extra.Partner"]


class PartnerAgain(models.Model):
    """A second extension of the same model in the same module: it comes after the first."""

    _inherit = "res.partner"

    vip_reminders = fields.Integer()

    def describe(self):
        return [*super().describe(), "crm_extra.PartnerAgain"]

    def create(self, vals_list):
        many = isinstance(vals_list, list)
        vals_list = [
            {**vals, "email": vals["email"].lower()} if vals.get("email") else vals
            for vals in (vals_list if many else [vals_list])
        ]
        return super().create(vals_list if many else vals_list[0])


class Tracked(models.AbstractModel):
    _name = "crm.tracked.mixin"
    _description = "Something with a note"

    note = fields.Char()

    def describe(self):
        return ["tracked"]


class Scored(models.AbstractModel):
    _name = "crm.scored.mixin"
    _description = "Something with a score"

    score = fields.Integer(default=10)

    def describe(self):
        return [*super().describe(), "scored"]

    def bump(self):
        for record in self:
            record.score += 1


class Campaign(models.Model):
    _name = "crm.campaign"
    _inherit = ["crm.scored.mixin", "crm.tracked.mixin"]
    _description = "Campaign"

    name = fields.Char(required=True)
    lead_ids = fields.Many2many("crm.lead", string="Leads")

    def describe(self):
        return [*super().describe(), "campaign"]


class Lead(models.Model):
    _inherit = "crm.lead"

    campaign_ids = fields.Many2many("crm.campaign", string="Campaigns")
    stage = fields.Selection(
        [("new", "New"), ("qualified", "Qualified"), ("won", "Won"), ("lost", "Lost")]
    )
